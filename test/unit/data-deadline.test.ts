/**
 * The DATA deadline (src/filter/data-deadline.ts) on a PassThrough as smtp-server hands it over: it destroys a
 * stream whose final dot has not come in time, leaves one that ended (even if its reader is behind) or closed
 * alone, and never outlives the stream. Then the service's answer to it (451 4.4.2, PW-F008, nothing spooled
 * left) and the config key's default and bounds.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, describe, it } from 'node:test';
import { parseConfigText } from '../../src/config/load.js';
import { DataDeadline, watchDataDeadline } from '../../src/filter/data-deadline.js';
import { buildFilterService } from '../../src/filter/stages.js';
import { createLogger } from '../../src/observe/logger.js';
import { Metrics } from '../../src/observe/metrics.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

/** A reader that takes whatever comes and throws it away. */
const sink = () =>
  new Writable({
    write(_chunk, _encoding, done) {
      done();
    },
  });

describe('watchDataDeadline', () => {
  it('a message that ends in time: not expired, the timer is gone', async () => {
    const before = timers();
    const data = new PassThrough();
    const watch = watchDataDeadline(data, 200);
    assert.equal(timers(), before + 1);
    const read = pipeline(data, sink());
    data.end('Subject: hi\r\n\r\nhello\r\n');
    await read;
    assert.equal(watch.expired, false);
    assert.equal(timers(), before);
  });

  it('a trickled message: destroyed at the deadline with DataDeadline, the reader hears it', async () => {
    const data = new PassThrough();
    const watch = watchDataDeadline(data, 150);
    const read = pipeline(data, sink());
    const trickle = setInterval(() => {
      if (data.writable) data.write('x');
    }, 20);
    try {
      await assert.rejects(read, (error: unknown) => {
        assert.ok(error instanceof DataDeadline);
        assert.match(error.message, /within filter\.data_timeout_s \(0\.15 s\)/);
        return true;
      });
    } finally {
      clearInterval(trickle);
    }
    assert.equal(watch.expired, true);
    assert.equal(data.destroyed, true);
  });

  it('the byte count of smtp-server’s stream is in the reason', async () => {
    const data = Object.assign(new PassThrough(), { byteLength: 1234 });
    watchDataDeadline(data, 20);
    await assert.rejects(pipeline(data, sink()), /1234 bytes came/);
  });

  it('a client that goes away first: the timer is cleared, nothing expires', async () => {
    const before = timers();
    const data = new PassThrough();
    const watch = watchDataDeadline(data, 100);
    data.on('error', () => undefined);
    data.destroy(new Error('Connection closed before the message was received in full'));
    await sleep(10);
    assert.equal(timers(), before);
    await sleep(150);
    assert.equal(watch.expired, false);
  });

  it('the final dot came, the reader is behind: the deadline no longer applies', async () => {
    const data = new PassThrough({ highWaterMark: 4 });
    const watch = watchDataDeadline(data, 50);
    data.end('a message longer than the buffers, whose reader has not started yet\r\n');
    await sleep(120);
    assert.equal(watch.expired, false);
    assert.equal(data.destroyed, false);
    const chunks: Buffer[] = [];
    for await (const chunk of data) chunks.push(chunk as Buffer);
    assert.match(Buffer.concat(chunks).toString(), /reader has not started/);
  });

  it('clear() before the deadline: nothing happens later', async () => {
    const data = new PassThrough();
    const watch = watchDataDeadline(data, 30);
    watch.clear();
    watch.clear();
    await sleep(60);
    assert.equal(watch.expired, false);
    assert.equal(data.destroyed, false);
  });

  it('no reader listening for errors: expiring does not crash the process', async () => {
    const data = new PassThrough();
    const watch = watchDataDeadline(data, 20);
    await sleep(60);
    assert.equal(watch.expired, true);
    assert.equal(data.destroyed, true);
  });
});

describe('the filter service at the DATA deadline', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'pw-h-trickle-unit-'));
  after(() => rmSync(work, { recursive: true, force: true }));

  it('answers 451 4.4.2, counts PW-F008, logs it once and leaves nothing in the spool', async () => {
    const loaded = parseConfigText(
      `local_domains: [example.test]
filter:
  enabled: true
  spool_dir: ${path.join(work, 'spool')}
  quarantine: { dir: ${path.join(work, 'quarantine')} }
`,
      { kind: 'embedded' },
    );
    assert.ok(loaded.ok);
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger(
      'info',
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
          done();
        },
      }),
    );
    const metrics = new Metrics({ processMetrics: false });
    const { service, spool } = buildFilterService(loaded.config, work, [], logger, metrics);
    spool.prepare();
    const data = new PassThrough();
    watchDataDeadline(data, 100);
    const trickle = setInterval(() => {
      if (data.writable) data.write('X-Trickle: y\r\n');
    }, 10);
    const reply = await service
      .handle(data, {
        envelope: { sender: 'slow@example.net', recipients: [{ address: 'alice@example.test' }] },
        xforward: new Map(),
        remote: '127.0.0.1',
      })
      .finally(() => clearInterval(trickle));
    assert.equal(reply.code, 451);
    assert.match(reply.text, /^4\.4\.2 /);
    assert.deepEqual(readdirSync(spool.dir), [], 'the partly spooled message is removed');
    const decisions = lines.filter((l) => l['event'] === 'filter.decision');
    assert.equal(decisions.length, 1);
    assert.equal(decisions[0]?.['code'], 'PW-F008');
    assert.equal(decisions[0]?.['sender'], 'slow@example.net');
    assert.match(String(decisions[0]?.['reply']), /^451 4\.4\.2 /);
    assert.match(await metrics.registry.metrics(), /^postwarden_errors_total\{code="PW-F008"\} 1$/m);
  });
});

describe('filter.data_timeout_s', () => {
  const load = (value?: number) =>
    parseConfigText(
      `local_domains: [example.test]\n${value === undefined ? '' : `filter: { data_timeout_s: ${value} }\n`}`,
      { kind: 'embedded' },
    );

  it('defaults to 600 s', () => {
    const loaded = load();
    assert.ok(loaded.ok);
    assert.equal(loaded.config.filter.data_timeout_s, 600);
  });

  for (const [value, ok] of [
    [9, false],
    [10, true],
    [3600, true],
    [3601, false],
  ] as const) {
    it(`${value}: ${ok ? 'accepted' : 'a problem named by its key'}`, () => {
      const loaded = load(value);
      assert.equal(loaded.ok, ok);
      if (!loaded.ok)
        assert.deepEqual(
          loaded.problems.map((p) => p.key),
          ['filter.data_timeout_s'],
        );
    });
  }
});
