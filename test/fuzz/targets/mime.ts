/**
 * The content filter's message path, without the network: a mutated message (corpus.ts) is spooled (the raw
 * inspection), parsed within the filter's default bounds, and run through every scanner but the antivirus (loop,
 * sanity, banned with the zip lister, rules, bayes with a trained in-memory model), each under its deadline,
 * then the filter's status header fields are built. Properties: a decision within the bound, never a throw; no
 * scanner fails (a failure would defer the message: an error or a missed deadline on content is a bug); the
 * status header fields are printable ASCII lines; the classifier's tokens stay within their bound.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { Readable } from 'node:stream';
import { parseConfigText } from '../../../src/config/load.js';
import { scanMessage } from '../../../src/core/content.js';
import { bayesTokens } from '../../../src/core/scanners/bayes.js';
import { BayesModel } from '../../../src/core/spam/bayes.js';
import { parseMessage } from '../../../src/filter/parse.js';
import { statusHeaders } from '../../../src/filter/service.js';
import { Spool } from '../../../src/filter/spool.js';
import { buildScannerStages, parseLimits } from '../../../src/filter/stages.js';
import { openStore } from '../../../src/store/index.js';
import { buildMessage, messageCorpus, type MessageInput, messageInput } from '../corpus.js';
import type { FuzzTarget } from '../runner.js';

const CONFIG = `
local_domains: [example.org]
filter:
  enabled: true
  scanners: [loop, sanity, banned, rules, bayes]
  bayes: { min_spam: 1, min_ham: 1 }
`;

const ENVELOPE = { sender: 'sender@example.net', recipients: ['alice@example.org'] };

const target: FuzzTarget<MessageInput> = {
  name: 'mime',
  unit: 'messages',
  iterations: { quick: 400, full: 100_000 },
  timeoutMs: 60_000,
  heapMb: 1024,
  extension: '.eml',
  input: messageInput,
  async open(ctx) {
    const loaded = parseConfigText(CONFIG, { kind: 'embedded' });
    if (!loaded.ok) throw new Error(`fuzz filter config: ${JSON.stringify(loaded.problems)}`);
    const filter = loaded.config.filter;
    const store = await openStore({ driver: 'sqlite', path: ':memory:' });
    const bayes = new BayesModel(store, filter.bayes.token_ttl_days * 86_400);
    const stages = buildScannerStages(loaded.config, { bayes });
    const limits = parseLimits(filter, stages);
    const spool = new Spool(path.join(ctx.workDir, 'spool'), filter.max_message_bytes);
    spool.prepare();
    // The classifier scores only once it has learned both classes: teach it one of each from the corpus.
    const corpus = messageCorpus();
    for (const [index, cls] of [
      [0, 'ham'],
      [corpus.length - 1, 'spam'],
    ] as const) {
      const spooled = await spool.write(Readable.from([corpus[index]!]));
      const facts = await parseMessage(spooled.open(), ENVELOPE, spooled.size, spooled.problems, limits);
      await bayes.learn(`<seed-${cls}@fuzz>`, bayesTokens(facts, filter.bayes), cls);
      spooled.remove();
    }
    const spam = { tagAt: filter.spam.tag_at, holdAt: filter.spam.quarantine_at };
    return {
      async run(input: MessageInput): Promise<number> {
        const message = buildMessage(input);
        const spooled = await spool.write(Readable.from([message]));
        try {
          const facts = await parseMessage(spooled.open(), ENVELOPE, spooled.size, spooled.problems, limits);
          const decision = await scanMessage(stages, facts, spooled, spam);
          if (decision.failures.length > 0) {
            assert.fail(`a scanner failed: ${JSON.stringify(decision.failures)}`);
          }
          assert.ok(['deliver', 'quarantine'].includes(decision.outcome.kind), decision.outcome.kind);
          assert.ok(Number.isFinite(decision.score), `score ${decision.score}`);
          const headers = statusHeaders(decision, 'mx.example.org', false, new Date(0), spam).toString(
            'latin1',
          );
          assert.match(headers, /^(?:[!-9;-~]+: [ -~]*\r\n)+$/, 'status header fields');
          assert.ok(
            bayesTokens(facts, filter.bayes).length <= filter.bayes.max_tokens,
            'tokens over the bound',
          );
        } finally {
          spooled.remove();
        }
        return 1;
      },
      close: () => store.close(),
    };
  },
  show: (input) => buildMessage(input),
};

export default target;
