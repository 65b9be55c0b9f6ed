/**
 * postwarden in the spam benchmark, in this process: the filter's scanner pipeline as `serve` builds it
 * (src/filter/stages.ts, `filter.scanners: [rules, bayes]`, every other setting the default, no clamd), over a
 * fresh SQLite state store; trained with learnMessage (as `postwarden learn` and the learn API do) and asked
 * with the filter's own parse (src/filter/parse.ts) and scanMessage (src/core/content.ts). A message is spam
 * when the decision says so: its summed score reached `filter.spam.tag_at` (5).
 *
 * One thing differs from a live filter: the clock the rules' Date checks read. Live, "now" is when the message
 * arrives; for a corpus from 2002 it is the date of its top Received field (when the corpus owner's MX took it),
 * so DATE_PAST and DATE_FUTURE judge the message as they would have then. The rules scanner is the one
 * stages.ts built, given that clock; nothing else is changed.
 *
 * Failure behaviour: an invalid config or a store that cannot open throws (the benchmark is broken); a
 * scanner failure is a decision with failures, counted by the caller.
 */
import path from 'node:path';
import { Readable } from 'node:stream';
import { validateConfig } from '../src/config/load.js';
import type { Config } from '../src/config/schema.js';
import {
  type ContentDecision,
  type ContentScanner,
  type ScannerStage,
  scanMessage,
} from '../src/core/content.js';
import { createRulesScanner } from '../src/core/scanners/rules.js';
import { parseRfc5322Date } from '../src/core/scanners/rules/headers.js';
import { BayesModel, type BayesClass, type LearnOutcome } from '../src/core/spam/bayes.js';
import type { Store } from '../src/core/store.js';
import { learnMessage } from '../src/filter/learn.js';
import { parseMessage } from '../src/filter/parse.js';
import { buildScannerStages } from '../src/filter/stages.js';
import { SqliteStore } from '../src/store/index.js';
import { BenchError } from './load.js';

export interface Postwarden {
  readonly config: Readonly<Config>;
  /** Learns one message; 'already' when its Message-ID was learned before (the corpus has a few twins). */
  learn(raw: Buffer, cls: BayesClass): Promise<LearnOutcome>;
  classify(raw: Buffer): Promise<ContentDecision>;
  close(): Promise<void>;
}

/** The top Received field's date (ms), or undefined. */
function receivedAt(headers: readonly { name: string; value: string }[]): number | undefined {
  const top = headers.find((h) => h.name.toLowerCase() === 'received')?.value;
  const semi = top?.lastIndexOf(';') ?? -1;
  return top === undefined || semi < 0 ? undefined : parseRfc5322Date(top.slice(semi + 1));
}

/** The rules stage with the clock set to each message's arrival (see the file comment). */
function rulesAtArrival(config: Readonly<Config>): ContentScanner {
  let arrival = Date.now();
  const rules = createRulesScanner(config.filter.rules, { now: () => arrival });
  return {
    name: rules.name,
    scan(message, ctx) {
      arrival = receivedAt(message.headers) ?? Date.now();
      // Synchronous, so no other message's scan can move the clock in between.
      return rules.scan(message, ctx);
    },
  };
}

export function openPostwarden(dir: string): Postwarden {
  const loaded = validateConfig(
    { local_domains: ['example.com'], filter: { enabled: true, scanners: ['rules', 'bayes'] } },
    { kind: 'embedded' },
  );
  if (!loaded.ok) throw new BenchError(`postwarden config: ${JSON.stringify(loaded.problems)}`);
  const config = loaded.config;
  const filter = config.filter;
  const store: Store = new SqliteStore({ path: path.join(dir, 'state.db') });
  const model = new BayesModel(store, filter.bayes.token_ttl_days * 86_400);
  const stages: ScannerStage[] = buildScannerStages(config, { bayes: model }).map((stage) =>
    stage.scanner.name === 'rules' ? { ...stage, scanner: rulesAtArrival(config) } : stage,
  );
  const limits = {
    maxDepth: filter.parse.max_depth,
    maxParts: filter.parse.max_parts,
    keepBytes: filter.parse.keep_bytes,
    maxTextChars: filter.parse.max_text_chars,
  };
  const spam = { tagAt: filter.spam.tag_at, holdAt: filter.spam.quarantine_at };
  const envelope = { sender: 'sender@example.org', recipients: ['user@example.com'] };
  return {
    config,
    learn: (raw, cls) => learnMessage(model, raw, cls, filter.bayes.max_tokens),
    async classify(raw) {
      const facts = await parseMessage(Readable.from([raw]), envelope, raw.length, [], limits);
      const source = {
        size: raw.length,
        async *chunks() {
          yield raw;
        },
      };
      return scanMessage(stages, facts, source, spam);
    },
    close: () => store.close(),
  };
}
