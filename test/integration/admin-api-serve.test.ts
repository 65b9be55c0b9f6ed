/**
 * The admin API of a running `postwarden serve` (ports 21300-21302 on loopback, its own work directory): the
 * status names the faces where they listen; a block entry added through the API refuses the next policy request
 * at once, one added with the CLI within the refresh interval; a message's policy and filter decisions are
 * filed under its queue id and read back through the API and the CLI; greylisting state shows through the API.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PolicyClient } from '../../src/policy/client.js';
import { BIN, Postwarden, sleep } from '../harness/postwarden.js';
import { sendMessage, startRecordingSmtp, type RecordingSmtp } from '../harness/smtp.js';

const HTTP = '127.0.0.1:21300';
const POLICY = '127.0.0.1:21301';
const FILTER_PORT = 21302;
const TOKEN = 'serve-admin-token-0123456789abcdefghijklmnop';
const work = mkdtempSync('/tmp/pw-h-api-serve-');
const pw = new Postwarden('admin-api', work, HTTP, POLICY);
let smtp: RecordingSmtp;
let policy: PolicyClient;

const api = async (method: string, url: string, body?: unknown) => {
  const res = await fetch(`http://${HTTP}/api/v1${url}`, {
    method,
    headers: {
      authorization: `Bearer ${TOKEN}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

const cli = (args: string[]) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args, '--config', pw.configFile]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });

const BASE = {
  request: 'smtpd_access_policy',
  protocol_name: 'ESMTP',
  client_name: 'unknown',
  helo_name: 'mail.remote.test',
  sender: 'someone@remote.test',
  recipient: 'bob@example.org',
};

before(async () => {
  smtp = await startRecordingSmtp();
  writeFileSync(path.join(work, 'admin.token'), `${TOKEN}\n`, { mode: 0o600 });
  await pw.start(`local_domains: [example.org]
hostname: mx1.example.org
store: { driver: sqlite, path: ${path.join(work, 'state.db')} }
policy:
  listen: ${POLICY}
  checks: [lists, helo, greylist]
  lists: { block: { client: [192.0.2.200] } }
  greylist: { allow: [198.51.100.88] }
filter:
  enabled: true
  listen: 127.0.0.1:${FILTER_PORT}
  reinject: 127.0.0.1:${smtp.port}
  spool_dir: ${path.join(work, 'spool')}
  scanners: [loop]
  quarantine: { dir: ${path.join(work, 'quarantine')} }
http: { listen: ${HTTP}, token_file: ${path.join(work, 'admin.token')} }
`);
  policy = await PolicyClient.connect(POLICY);
});

after(async () => {
  policy?.close();
  await pw.stop();
  await smtp?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('the admin API of serve', () => {
  it('status: version, the faces where they listen, the store', async () => {
    const { status, body } = await api('GET', '/status');
    assert.equal(status, 200);
    assert.equal(body['instance'], 'mx1.example.org');
    assert.equal(body['status'], 'ready');
    assert.deepEqual(body['faces'], [
      { name: 'policy', listening: true, addresses: [POLICY] },
      { name: 'filter', listening: true, addresses: [`127.0.0.1:${FILTER_PORT}`] },
      { name: 'http', listening: true, addresses: [`http://${HTTP}`] },
    ]);
    const checks = body['checks'] as { name: string; ready: boolean }[];
    assert.ok(checks.some((c) => c.name === 'store sqlite' && c.ready));
  });

  it('a block entry added through the API refuses at once; one added with the CLI within the refresh', async () => {
    const ask = (client: string) =>
      policy.query({
        ...BASE,
        protocol_state: 'RCPT',
        client_address: client,
        instance: `i-${Math.random()}`,
      });
    assert.match(await ask('192.0.2.200'), /^554 5\.7\.1/, 'the config entry');
    const added = await api('POST', '/lists/block.client/entries', {
      entry: '198.51.100.44',
      value: 'Not you',
    });
    assert.equal(added.status, 201);
    assert.equal(await ask('198.51.100.44'), '554 5.7.1 Not you');
    const viaCli = await cli(['lists', 'add', 'block.client', '203.0.113.55', '--value', 'Nor you']);
    assert.equal(viaCli.code, 0, viaCli.stderr);
    const deadline = Date.now() + 15_000;
    let answer = await ask('203.0.113.55');
    while (!answer.startsWith('554') && Date.now() < deadline) {
      await sleep(500);
      answer = await ask('203.0.113.55');
    }
    assert.equal(answer, '554 5.7.1 Nor you');
    const shown = await cli(['lists', 'show', 'block.client', '--json']);
    assert.match(shown.stdout, /198\.51\.100\.44 Not you, 203\.0\.113\.55 Nor you/);
    const removed = await cli(['lists', 'remove', 'block.client', '192.0.2.200']);
    assert.equal(removed.code, 65, 'a config entry is removed in the config');
  });

  it('greylisting state shows through the API', async () => {
    const action = await policy.query({
      ...BASE,
      protocol_state: 'RCPT',
      client_address: '198.51.100.77',
      instance: 'grey-1',
    });
    assert.match(action, /^DEFER_IF_PERMIT|^450|^451/);
    const { status, body } = await api('GET', '/greylist?network=198.51.100.77');
    assert.equal(status, 200);
    const items = body['items'] as { sender: string; state: string }[];
    assert.deepEqual(
      items.map((t) => [t.sender, t.state]),
      [['someone@remote.test', 'waiting']],
    );
  });

  it('policy and filter decisions are filed under the queue id, read by the API and the CLI', async () => {
    const message = {
      ...BASE,
      client_address: '198.51.100.88',
      helo_name: '198.51.100.88',
      instance: 'decided-1',
    };
    await policy.query({ ...message, protocol_state: 'RCPT', queue_id: '' });
    await policy.query({ ...message, protocol_state: 'END-OF-MESSAGE', queue_id: '3F2A1B0C9D' });
    const sent = await sendMessage('127.0.0.1', FILTER_PORT, {
      from: 'someone@remote.test',
      to: ['bob@example.org'],
      message:
        'Received: from mail.remote.test (unknown [198.51.100.88])\r\n' +
        '\tby mx1.example.org (Postfix) with ESMTP id 3F2A1B0C9D\r\n' +
        '\tfor <bob@example.org>; Mon, 23 Nov 2026 01:00:00 +0000\r\n' +
        'From: someone@remote.test\r\nTo: bob@example.org\r\nSubject: decided\r\n\r\nhello\r\n',
    });
    assert.equal(sent.reply.code, 250, sent.reply.text);
    const deadline = Date.now() + 5000;
    let found = await api('GET', '/decisions/3F2A1B0C9D');
    while ((found.body['records'] as unknown[] | undefined)?.length !== 3 && Date.now() < deadline) {
      await sleep(100);
      found = await api('GET', '/decisions/3F2A1B0C9D');
    }
    assert.equal(found.status, 200, JSON.stringify(found.body));
    const records = found.body['records'] as {
      face: string;
      state?: string;
      action: string;
      reply?: string;
    }[];
    assert.deepEqual(
      records.map((r) => [r.face, r.state ?? '', r.action]),
      [
        ['policy', 'RCPT', 'dunno'],
        ['policy', 'END-OF-MESSAGE', 'dunno'],
        ['filter', '', 'deliver'],
      ],
    );
    assert.match(records[2]?.reply ?? '', /^250 /);
    const viaCli = await cli(['decisions', '3F2A1B0C9D']);
    assert.equal(viaCli.code, 0, viaCli.stderr);
    assert.match(viaCli.stdout, /policy +RCPT +dunno +helo/);
    assert.equal((await api('GET', '/decisions/0000000000')).status, 404);
  });
});
