/**
 * Dovecot's script-service protocol (src/dovecot/script-socket.ts): the header codec against bytes built the way
 * dovecot/core's program-client-remote.c builds them, the server on a real unix socket with a client that
 * behaves as Dovecot's does (header, message, shutdown of its side, then read the result), and the learn
 * report handler (src/dovecot/learn.ts) deciding the answer.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { learnReportHandler } from '../../src/dovecot/learn.js';
import {
  groupId,
  parseScriptHeader,
  type ScriptHandler,
  type ScriptInput,
  type ScriptRequest,
  ScriptSocketServer,
  tabUnescape,
} from '../../src/dovecot/script-socket.js';
import { createLogger } from '../../src/observe/logger.js';
import { Metrics } from '../../src/observe/metrics.js';

/** As str_append_tabescaped() (dovecot/core src/lib/strescape.c). */
const ESCAPED: Readonly<Record<string, string>> = {
  '\x01': '\x011',
  '\t': '\x01t',
  '\r': '\x01r',
  '\n': '\x01n',
};
const tabEscape = (s: string) => [...s].map((c) => ESCAPED[c] ?? c).join('');

/** The header program_client_remote_connected() sends: VERSION, env_ lines, "-" or "noreply", args, empty line. */
function dovecotHeader(env: Record<string, string>, args: string[], noreply = false): string {
  return [
    'VERSION\tscript\t4\t0',
    ...Object.entries(env).map(([k, v]) => `env_${tabEscape(`${k}=${v}`)}`),
    noreply ? 'noreply' : '-',
    ...args.map(tabEscape),
    '',
    '',
  ].join('\n');
}

const MESSAGE = 'From: a@example.net\r\nSubject: hi\r\n\r\nbody\r\n';

describe('the script protocol header', () => {
  it('undoes tab escaping', () => {
    const cases: [string, string][] = [
      ['plain', 'plain'],
      ['a\x01tb', 'a\tb'],
      ['\x01r\x01n\x010\x011', '\r\n\0\x01'],
      ['end\x01', 'end'],
    ];
    for (const [input, expected] of cases) assert.equal(tabUnescape(input), expected, JSON.stringify(input));
    assert.equal(tabUnescape(tabEscape('x\ty\r\nz\x01')), 'x\ty\r\nz\x01');
  });

  it('reads what Pigeonhole pipe sends, and says where the message starts', () => {
    const header = dovecotHeader({ USER: 'alice@example.test', HOME: '/home/a\tb', HOST: 'mx' }, [
      'spam',
      'two\nlines',
    ]);
    const parsed = parseScriptHeader(Buffer.from(header + MESSAGE), 65536);
    assert.equal(parsed.kind, 'request');
    if (parsed.kind !== 'request') return;
    assert.equal(parsed.headerBytes, Buffer.byteLength(header));
    assert.deepEqual(parsed.request.args, ['spam', 'two\nlines']);
    assert.equal(parsed.request.env.get('USER'), 'alice@example.test');
    assert.equal(parsed.request.env.get('HOME'), '/home/a\tb');
    assert.equal(parsed.request.noreply, false);
    assert.equal(parsed.request.minorVersion, 0);
  });

  it('needs more until the empty line arrives, byte by byte', () => {
    const header = Buffer.from(dovecotHeader({ USER: 'u' }, ['ham']));
    for (let n = 0; n < header.length; n++) {
      assert.equal(parseScriptHeader(header.subarray(0, n), 65536).kind, 'more', `at ${n}`);
    }
    assert.equal(parseScriptHeader(header, 65536).kind, 'request');
  });

  it('takes alarm= and noreply, and no arguments', () => {
    const parsed = parseScriptHeader(Buffer.from('VERSION\tscript\t4\t1\nalarm=10\nnoreply\n\n'), 1024);
    assert.equal(parsed.kind, 'request');
    if (parsed.kind !== 'request') return;
    assert.equal(parsed.request.alarmS, 10);
    assert.equal(parsed.request.noreply, true);
    assert.deepEqual(parsed.request.args, []);
  });

  it('refuses what is not the script protocol, version 4', () => {
    const cases: [string, RegExp][] = [
      ['GET / HTTP/1.0\r\n\r\n\n\n', /no VERSION/],
      ['VERSION\tscript\t3\t0\n-\n\n', /version 3/],
      ['VERSION\tauth\t4\t0\n-\n\n', /no VERSION/],
      ['VERSION\tscript\t4\t0\nenv_NOEQUALS\n-\n\n', /env_/],
    ];
    for (const [input, reason] of cases) {
      const parsed = parseScriptHeader(Buffer.from(input), 1024);
      assert.equal(parsed.kind, 'bad', JSON.stringify(input));
      if (parsed.kind === 'bad') assert.match(parsed.reason, reason);
    }
    const endless = parseScriptHeader(Buffer.from(`VERSION\tscript\t4\t0\n${'x'.repeat(100)}`), 64);
    assert.equal(endless.kind, 'bad');
  });

  it('finds a group by name or number in a group file', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pw-group-'));
    const file = path.join(dir, 'group');
    writeFileSync(file, 'root:x:0:\nvmail:x:995:\n');
    assert.equal(groupId('vmail', file), 995);
    assert.equal(groupId('123', file), 123);
    assert.equal(groupId('nobody-here', file), undefined);
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('the script socket server', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pw-script-'));
  const logger = createLogger('silent');
  after(() => rmSync(dir, { recursive: true, force: true }));

  let servers = 0;
  async function serve(
    handler: ScriptHandler,
    limits: { maxInputBytes?: number; maxConnections?: number } = {},
  ) {
    const socketPath = path.join(dir, `s${++servers}`);
    const metrics = new Metrics({ processMetrics: false });
    const server = new ScriptSocketServer(
      {
        path: socketPath,
        mode: 0o660,
        maxConnections: limits.maxConnections ?? 5,
        maxHeaderBytes: 4096,
        maxInputBytes: limits.maxInputBytes ?? 1024,
        idleTimeoutMs: 2000,
      },
      handler,
      logger,
      metrics,
    );
    await server.listen();
    return { server, socketPath, metrics };
  }

  /** Dovecot's client: header and message, shutdown(SHUT_WR), then everything until the server closes. */
  function pipe(socketPath: string, data: string | Buffer): Promise<string> {
    return new Promise((resolve) => {
      const socket = net.createConnection(socketPath);
      const got: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => got.push(chunk));
      socket.on('close', () => resolve(Buffer.concat(got).toString('latin1')));
      // A refused connection may break the write (EPIPE): the client then sees no answer, as Dovecot does.
      socket.on('error', () => undefined);
      socket.end(data);
    });
  }

  it('hands the request and the whole message to the handler, then answers its result', async () => {
    const seen: { request: ScriptRequest; input: ScriptInput }[] = [];
    let answer = true;
    const { server, socketPath } = await serve((request, input) => {
      seen.push({ request, input });
      return answer;
    });
    assert.equal(statSync(socketPath).mode & 0o777, 0o660);
    const header = dovecotHeader({ USER: 'alice' }, ['spam']);
    assert.equal(await pipe(socketPath, header + MESSAGE), '+\n');
    answer = false;
    assert.equal(await pipe(socketPath, header + MESSAGE), '-\n');
    assert.equal(seen.length, 2);
    const first = seen[0];
    assert.deepEqual(first?.request.args, ['spam']);
    assert.ok(first?.input.complete);
    if (first?.input.complete) assert.equal(first.input.data.toString(), MESSAGE);
    await server.close();
  });

  it('reads a message over the bound to the end, keeps none of it, and tells the handler', async () => {
    let input: ScriptInput | undefined;
    const { server, socketPath } = await serve((_request, given) => {
      input = given;
      return false;
    });
    const big = Buffer.alloc(5000, 'x');
    assert.equal(
      await pipe(socketPath, Buffer.concat([Buffer.from(dovecotHeader({}, ['ham'])), big])),
      '-\n',
    );
    assert.deepEqual(input, { complete: false, bytes: 5000 });
    await server.close();
  });

  it('closes without an answer on a bad header, on an early close, and for noreply', async () => {
    let calls = 0;
    const { server, socketPath, metrics } = await serve(() => {
      calls += 1;
      return true;
    });
    assert.equal(await pipe(socketPath, 'HELLO\n\n'), '');
    assert.equal(await pipe(socketPath, 'VERSION\tscript\t4\t0\n-\n'), '');
    assert.equal(calls, 0);
    const errors = await metrics.get('postwarden_errors_total').get();
    assert.equal(errors.values.find((v) => v.labels['code'] === 'PW-V001')?.value, 2);
    assert.equal(await pipe(socketPath, dovecotHeader({}, ['spam'], true) + MESSAGE), '');
    assert.equal(calls, 1);
    await server.close();
  });

  it('refuses connections over max_connections', async () => {
    let release: (() => void) | undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const { server, socketPath } = await serve(() => held.then(() => true), { maxConnections: 1 });
    const first = pipe(socketPath, dovecotHeader({}, ['spam']) + MESSAGE);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(await pipe(socketPath, dovecotHeader({}, ['spam']) + MESSAGE), '');
    release?.();
    assert.equal(await first, '+\n');
    await server.close();
  });
});

describe('the learn report handler', () => {
  const request = (args: string[]): ScriptRequest => ({
    minorVersion: 0,
    env: new Map([['USER', 'alice']]),
    noreply: false,
    args,
  });
  const data: ScriptInput = { complete: true, data: Buffer.from(MESSAGE) };

  it('queues spam and ham, and answers failure when it cannot', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const submitted: string[] = [];
    type Queued = 'queued' | 'duplicate' | 'full';
    let queue = 'queued' as Queued;
    const handle = learnReportHandler(
      (cls) => {
        submitted.push(cls);
        return queue;
      },
      createLogger('silent'),
      metrics,
    );
    const cases: [string[], ScriptInput, Queued, boolean][] = [
      [['spam'], data, 'queued', true],
      [['ham'], data, 'duplicate', true],
      [['ham'], data, 'full', false],
      [['eggs'], data, 'queued', false],
      [[], data, 'queued', false],
      [['spam'], { complete: false, bytes: 99 }, 'queued', false],
    ];
    for (const [args, input, result, ok] of cases) {
      queue = result;
      assert.equal(await handle(request(args), input), ok, `${args.join()} ${result}`);
    }
    assert.deepEqual(submitted, ['spam', 'ham', 'ham']);
    const counted = (await metrics.get('postwarden_learn_socket_reports_total').get()).values.map(
      (v) => `${v.labels['class']}/${v.labels['result']}=${v.value}`,
    );
    assert.deepEqual(counted.sort(), [
      'ham/duplicate=1',
      'ham/full=1',
      'none/no_class=2',
      'spam/queued=1',
      'spam/too_large=1',
    ]);
  });
});
