/**
 * The Bayesian classifier on a real store (SQLite; the store suite shows the Redis driver behaves the same):
 * learning is idempotent per message and learning the other class moves it; after training on two clearly
 * different sets, a new message of each kind lands in the right band; `postwarden learn` reads an mbox and a
 * directory and reports what it did.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { learnMessage } from '../../src/filter/learn.js';
import { bayesSchema, createBayesScanner } from '../../src/core/scanners/bayes.js';
import { BayesModel } from '../../src/core/spam/bayes.js';
import type { Store } from '../../src/core/store.js';
import { parseMessage } from '../../src/filter/parse.js';
import { openStore } from '../../src/store/index.js';
import { BIN, Postwarden, sleep } from '../harness/postwarden.js';

const run = promisify(execFile);
const work = mkdtempSync(path.join(os.tmpdir(), 'pw-bayes-it-'));
let store: Store;
let model: BayesModel;

const SPAM_WORDS = [
  'viagra',
  'casino',
  'winner',
  'lottery',
  'bitcoin',
  'discount',
  'pharmacy',
  'prize',
  'unsubscribe',
];
const HAM_WORDS = [
  'meeting',
  'agenda',
  'invoice',
  'project',
  'deadline',
  'review',
  'minutes',
  'schedule',
  'report',
];
const COMMON = ['the', 'and', 'for', 'with', 'this', 'that', 'your', 'please'];

function pick<T>(list: readonly T[], n: number, seed: number): T[] {
  return Array.from({ length: n }, (_, i) => list[(seed * 7 + i * 3) % list.length] as T);
}

function message(kind: 'spam' | 'ham', n: number): Buffer {
  const words = [...pick(kind === 'spam' ? SPAM_WORDS : HAM_WORDS, 12, n), ...pick(COMMON, 10, n)];
  return Buffer.from(
    [
      `From: ${kind === 'spam' ? 'Deals <offers@promo.example.net>' : 'Colleague <bob@example.org>'}`,
      'To: alice@example.org',
      `Subject: ${kind === 'spam' ? 'You are a winner' : 'Project review'} ${n}`,
      `Message-ID: <${kind}-${n}@example.net>`,
      '',
      words.join(' '),
      '',
    ].join('\r\n'),
  );
}

async function facts(raw: Buffer) {
  return parseMessage(Readable.from([raw]), { sender: '', recipients: [] }, raw.length, [], {
    maxDepth: 20,
    maxParts: 100,
    keepBytes: 0,
    maxTextChars: 100_000,
  });
}

before(async () => {
  store = await openStore({ driver: 'sqlite', path: path.join(work, 'state.db') });
  model = new BayesModel(store, 86_400);
});

after(async () => {
  await store.close();
  rmSync(work, { recursive: true, force: true });
});

describe('the Bayesian classifier on SQLite', () => {
  it('learning is idempotent per message; the other class moves it', async () => {
    const raw = message('spam', 1000);
    assert.equal(await learnMessage(model, raw, 'spam', 3000), 'learned');
    assert.equal(await learnMessage(model, raw, 'spam', 3000), 'already');
    assert.deepEqual(await model.learned(), { spam: 1, ham: 0 });
    assert.equal(await learnMessage(model, raw, 'ham', 3000), 'moved');
    assert.deepEqual(await model.learned(), { spam: 0, ham: 1 });
    assert.equal(await learnMessage(model, raw, 'spam', 3000), 'moved');
    assert.deepEqual(await model.learned(), { spam: 1, ham: 0 });
  });

  it('says nothing before min_spam/min_ham, then classifies new messages into the right bands', async () => {
    const settings = bayesSchema.parse({ min_spam: 20, min_ham: 20 });
    const scanner = createBayesScanner(settings, model);
    const ctx = {
      source: { size: 0, chunks: () => Readable.from([]) },
      signal: new AbortController().signal,
    };
    assert.deepEqual(await scanner.scan(await facts(message('spam', 500)), ctx), []);
    for (let n = 0; n < 30; n++) {
      await learnMessage(model, message('spam', n), 'spam', 3000);
      await learnMessage(model, message('ham', n), 'ham', 3000);
    }
    const spam = await scanner.scan(await facts(message('spam', 501)), ctx);
    const ham = await scanner.scan(await facts(message('ham', 501)), ctx);
    assert.equal(spam[0]?.symbol, 'BAYES_SPAM_HIGH', JSON.stringify(spam));
    assert.equal(ham[0]?.symbol, 'BAYES_HAM_HIGH', JSON.stringify(ham));
  });
});

describe('postwarden learn', () => {
  it('reads an mbox and a directory, and says what it learned', async () => {
    const mbox = path.join(work, 'spam.mbox');
    writeFileSync(
      mbox,
      [0, 1, 2]
        .map(
          (n) =>
            `From offers@promo.example.net Sun Nov 22 10:00:00 2026\n${message('spam', 200 + n).toString()}\n`,
        )
        .join(''),
    );
    const dir = path.join(work, 'ham');
    mkdirSync(dir);
    for (const n of [0, 1]) writeFileSync(path.join(dir, `${n}.eml`), message('ham', 300 + n));
    const config = path.join(work, 'pw.yml');
    writeFileSync(
      config,
      `local_domains: [example.org]\nstore: { driver: sqlite, path: ${path.join(work, 'cli.db')} }\n`,
    );
    const spam = await run(process.execPath, [BIN, 'learn', 'spam', '--config', config, mbox]);
    assert.match(
      spam.stdout,
      /^spam: 3 learned, 0 moved from the other class, 0 already known; the classifier knows 3 spam and 0 ham$/m,
    );
    const again = await run(process.execPath, [BIN, 'learn', 'spam', '--config', config, mbox]);
    assert.match(again.stdout, /0 learned, 0 moved from the other class, 3 already known/);
    const ham = await run(process.execPath, [BIN, 'learn', 'ham', '--config', config, dir]);
    assert.match(ham.stdout, /^ham: 2 learned, .* knows 3 spam and 2 ham$/m);
  });
});

describe('the learn API (what Dovecot’s IMAPSieve scripts call)', () => {
  const http = '127.0.0.1:20763';
  const pw = new Postwarden('learn-api', work, http);
  const token = 'a'.repeat(40);
  const post = (cls: string, body: Buffer, auth = `Bearer ${token}`) =>
    fetch(`http://${http}/api/v1/learn/${cls}`, {
      method: 'POST',
      headers: { authorization: auth, 'content-type': 'message/rfc822' },
      body,
    });

  before(async () => {
    writeFileSync(path.join(work, 'admin.token'), `${token}\n`, { mode: 0o600 });
    await pw.start(`local_domains: [example.org]
store: { driver: sqlite, path: ${path.join(work, 'api.db')} }
policy: { listen: 127.0.0.1:20760, checks: [relay] }
filter:
  enabled: true
  listen: 127.0.0.1:20761
  reinject: 127.0.0.1:20762
  spool_dir: ${path.join(work, 'api-spool')}
  scanners: [loop, bayes]
  quarantine: { dir: ${path.join(work, 'api-quarantine')} }
http: { listen: ${http}, token_file: ${path.join(work, 'admin.token')} }
`);
  });
  after(() => pw.stop());

  it('refuses a request without the token (401) and a bad class (404)', async () => {
    const wrong = await post('spam', message('spam', 900), 'Bearer wrong');
    assert.equal(wrong.status, 401, `${await wrong.text()} ${pw.log().slice(-1500)}`);
    assert.equal((await post('spam', message('spam', 900), '')).status, 401);
    assert.equal((await post('eggs', message('spam', 900))).status, 404);
  });

  it('queues a report (202), learns it in the background, and a second report of it changes nothing', async () => {
    const first = await post('spam', message('spam', 901));
    assert.equal(first.status, 202);
    const learned = async (outcome: string) => {
      const deadline = Date.now() + 5000;
      for (;;) {
        const text = await pw.metrics();
        const line = text
          .split('\n')
          .find((l) => l.startsWith(`postwarden_learned_total{class="spam",outcome="${outcome}"}`));
        if (line || Date.now() > deadline) return line;
        await sleep(50);
      }
    };
    assert.match((await learned('learned')) ?? '', / 1$/);
    assert.equal((await post('spam', message('spam', 901))).status, 202);
    assert.match((await learned('already')) ?? '', / 1$/);
    assert.equal((await post('ham', message('spam', 901))).status, 202);
    const moved = async () => {
      const deadline = Date.now() + 5000;
      for (;;) {
        const line = (await pw.metrics())
          .split('\n')
          .find((l) => l.startsWith('postwarden_learned_total{class="ham",outcome="moved"}'));
        if (line || Date.now() > deadline) return line;
        await sleep(50);
      }
    };
    assert.match((await moved()) ?? '', / 1$/);
  });
});
