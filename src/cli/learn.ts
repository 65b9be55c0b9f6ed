/**
 * `postwarden learn spam|ham [--config FILE] PATH...` — teaches the Bayesian classifier (filter.bayes) from
 * messages: a PATH is one message file, a directory of message files (a Maildir's cur/ and new/ are read too),
 * or an mbox (a file whose first line starts with `From `). Each message is parsed as the filter parses mail and
 * its tokens are learned in the configured store, so every host sharing the store learns it.
 *
 * Idempotent per message (by its Message-ID, or its bytes when it has none): learning a message again as the same
 * class counts once; learning it as the other class moves it. Progress goes to stderr (one updating line on a
 * terminal); the summary to stdout.
 *
 * Exit codes: 0 done, 64 usage, 65 a PATH cannot be read, 69 the store is unavailable, 78 config problems.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { BayesModel, type LearnOutcome } from '../core/spam/bayes.js';
import { StoreUnavailable } from '../core/store.js';
import { learnMessage } from '../filter/learn.js';
import { openStore, StoreOptionsError } from '../store/index.js';
import { EXIT } from '../util/sysexits.js';
import { parse, UsageError } from './args.js';
import { loadOrReport, storeOptions } from './common.js';

/** Messages larger than this are skipped: the classifier reads the first characters only anyway. */
const MAX_MESSAGE_BYTES = 10 * 1024 * 1024;

/** The messages of a path: files, directories (one level, plus Maildir cur/ and new/), mbox files split. */
export function* messagesOf(target: string): Generator<{ name: string; raw: Buffer }> {
  const stat = statSync(target);
  if (stat.isDirectory()) {
    const names = readdirSync(target).sort();
    for (const sub of ['cur', 'new']) {
      if (names.includes(sub) && statSync(path.join(target, sub)).isDirectory())
        yield* messagesOf(path.join(target, sub));
    }
    for (const name of names) {
      const file = path.join(target, name);
      if (statSync(file).isFile()) yield* messagesOf(file);
    }
    return;
  }
  if (stat.size > MAX_MESSAGE_BYTES * 50)
    throw new Error(`${target}: larger than ${MAX_MESSAGE_BYTES * 50} bytes`);
  const raw = readFileSync(target);
  if (raw.subarray(0, 5).toString('latin1') !== 'From ') {
    if (raw.length <= MAX_MESSAGE_BYTES) yield { name: target, raw };
    return;
  }
  // mbox: a message starts at a line beginning "From " (mboxrd escapes body lines as ">From ").
  const text = raw.toString('latin1');
  const starts = [...text.matchAll(/^From [^\n]*\n/gm)];
  for (let i = 0; i < starts.length; i++) {
    const start = (starts[i]?.index ?? 0) + (starts[i]?.[0].length ?? 0);
    const end = starts[i + 1]?.index ?? text.length;
    const body = Buffer.from(text.slice(start, end).replace(/^>(>*From )/gm, '$1'), 'latin1');
    if (body.length <= MAX_MESSAGE_BYTES) yield { name: `${target}#${i + 1}`, raw: body };
  }
}

export async function learn(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { config: { type: 'string' } }, true);
  const [cls, ...paths] = positionals;
  if (cls !== 'spam' && cls !== 'ham')
    throw new UsageError('usage: postwarden learn spam|ham [--config FILE] PATH...');
  if (paths.length === 0) throw new UsageError('give one or more files, directories or mbox files');
  const loaded = loadOrReport(values.config);
  if (!loaded) return EXIT.CONFIG;
  let store;
  try {
    store = await openStore(storeOptions(loaded.config, loaded.baseDir));
  } catch (error) {
    if (!(error instanceof StoreOptionsError)) throw error;
    process.stderr.write(`postwarden learn: ${error.message}\n`);
    return EXIT.CONFIG;
  }
  const bayes = loaded.config.filter.bayes;
  const model = new BayesModel(store, bayes.token_ttl_days * 86_400);
  const counts: Record<LearnOutcome | 'failed', number> = { learned: 0, already: 0, moved: 0, failed: 0 };
  const tty = process.stderr.isTTY;
  let seen = 0;
  try {
    for (const target of paths) {
      let messages;
      try {
        messages = messagesOf(target);
      } catch (error) {
        process.stderr.write(`postwarden learn: ${(error as Error).message}\n`);
        return EXIT.DATAERR;
      }
      for (const { name, raw } of messages) {
        seen += 1;
        try {
          counts[await learnMessage(model, raw, cls, bayes.max_tokens)] += 1;
        } catch (error) {
          if (error instanceof StoreUnavailable) throw error;
          counts.failed += 1;
          process.stderr.write(`${tty ? '\n' : ''}postwarden learn: ${name}: ${(error as Error).message}\n`);
        }
        if (tty && seen % 10 === 0) process.stderr.write(`\rlearning ${cls}: ${seen} messages`);
      }
    }
    if (tty) process.stderr.write('\n');
    const learned = await model.learned();
    process.stdout.write(
      `${cls}: ${counts.learned} learned, ${counts.moved} moved from the other class, ${counts.already} already known` +
        `${counts.failed > 0 ? `, ${counts.failed} unreadable` : ''}; the classifier knows ${learned.spam} spam and ${learned.ham} ham\n`,
    );
    return EXIT.OK;
  } catch (error) {
    if (!(error instanceof StoreUnavailable)) throw error;
    process.stderr.write(`postwarden learn: ${error.message}\n`);
    return EXIT.UNAVAILABLE;
  } finally {
    await store.close();
  }
}
