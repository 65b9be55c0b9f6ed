/**
 * Golden transcripts of the policy face: each file in transcripts/ holds cases of requests in and the action
 * and decision log out, run through the real policy server over TCP on loopback with a real logger. Run with
 * UPDATE_GOLDEN=1 to rewrite the expected lines from what the server answers now (then read the diff!).
 *
 * Format: cases separated by a line `---`. `#` lines are the case's title; `> name=value` request attributes
 * laid over a full Postfix 3.7 RCPT request (an attribute given empty, `> name=`, is sent empty); `+ wait N`
 * moves the clock N seconds before the request (state is a fresh SQLite store per file); `< action`
 * the expected action; `= check SYMBOL score action mode | reason` one line per verdict of the decision log,
 * `= failure check CODE mode | reason` one per failed check (paths shortened), then `= decision ACTION score=N`.
 * `@config FILE` on a file's first line picks a config beside it.
 * All requests of a file go over one connection, in order, as Postfix's smtpd would send them.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseConfigText } from '../../src/config/load.js';
import { MapRegistry } from '../../src/maps/index.js';
import { createLogger } from '../../src/observe/logger.js';
import { Metrics } from '../../src/observe/metrics.js';
import { PolicyClient } from '../../src/policy/client.js';
import { PolicyServer } from '../../src/policy/server.js';
import { buildStages, createPolicyHandler } from '../../src/policy/service.js';
import { openStore } from '../../src/store/index.js';
import type { Store } from '../../src/core/store.js';

const HERE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/golden');
const UPDATE = process.env['UPDATE_GOLDEN'] === '1';

/** What Postfix 3.7 sends at RCPT (harness.md §3), before a case's own attributes are laid over it. */
const BASE: Record<string, string> = {
  request: 'smtpd_access_policy',
  protocol_state: 'RCPT',
  protocol_name: 'ESMTP',
  client_address: '198.51.100.7',
  client_name: 'mail.sender.test',
  client_port: '51666',
  reverse_client_name: 'mail.sender.test',
  server_address: '192.0.2.25',
  server_port: '25',
  helo_name: 'mail.sender.test',
  sender: 'someone@sender.test',
  recipient: 'alice@example.org',
  recipient_count: '0',
  queue_id: '',
  size: '0',
  etrn_domain: '',
  stress: '',
  sasl_method: '',
  sasl_username: '',
  sasl_sender: '',
  ccert_subject: '',
  ccert_issuer: '',
  ccert_fingerprint: '',
  ccert_pubkey_fingerprint: '',
  encryption_protocol: '',
  encryption_cipher: '',
  encryption_keysize: '0',
  policy_context: '',
};

interface Case {
  title: string[];
  /** Seconds the clock moves before the request (`+ wait N`). */
  wait: number;
  attributes: Record<string, string>;
  expected: string[];
}

function parseTranscript(text: string): { config: string; cases: Case[] } {
  const lines = text.split('\n');
  const config = lines[0]?.startsWith('@config ') ? lines.shift()!.slice(8).trim() : 'config.yml';
  const cases: Case[] = [];
  for (const block of lines.join('\n').split(/^---$/m)) {
    const c: Case = { title: [], wait: 0, attributes: {}, expected: [] };
    for (const line of block.split('\n')) {
      if (line.startsWith('#')) c.title.push(line);
      else if (line.startsWith('+ wait ')) c.wait = Number(line.slice(7));
      else if (line.startsWith('> ')) {
        const eq = line.indexOf('=');
        c.attributes[line.slice(2, eq)] = line.slice(eq + 1);
      } else if (line.startsWith('< ') || line.startsWith('= ')) c.expected.push(line);
    }
    if (c.title.length > 0 || Object.keys(c.attributes).length > 0) cases.push(c);
  }
  return { config, cases };
}

function render(config: string, cases: Case[]): string {
  const head = config === 'config.yml' ? '' : `@config ${config}\n`;
  const body = cases.map((c) => {
    const attrs = Object.entries(c.attributes).map(([k, v]) => `> ${k}=${v}`);
    const wait = c.wait > 0 ? [`+ wait ${c.wait}`] : [];
    return [...c.title, ...wait, ...attrs, ...c.expected].join('\n');
  });
  return `${head}${body.join('\n---\n')}\n`;
}

interface DecisionLog {
  event?: string;
  decision: string;
  score: number;
  verdicts: LoggedVerdict[];
  failures?: { check: string; code: string; mode: string; reason: string }[];
}

interface LoggedVerdict {
  check: string;
  symbol: string;
  score: number;
  action?: string;
  mode: string;
  reason: string;
}

function transcriptLines(action: string, log: DecisionLog): string[] {
  return [
    `< ${action}`,
    ...log.verdicts.map(
      (v) => `= ${v.check} ${v.symbol} ${v.score} ${v.action ?? '-'} ${v.mode} | ${v.reason}`,
    ),
    ...(log.failures ?? []).map(
      (f) => `= failure ${f.check} ${f.code} ${f.mode} | ${f.reason.replaceAll(HERE, '…')}`,
    ),
    `= decision ${log.decision} score=${log.score}`,
  ];
}

const stateDir = mkdtempSync(path.join(os.tmpdir(), 'pw-golden-'));
const stores: Store[] = [];
const servers: PolicyServer[] = [];
const registries: MapRegistry[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close(0)));
  for (const r of registries) r.close();
  await Promise.all(stores.map((s) => s.close()));
  rmSync(stateDir, { recursive: true, force: true });
});

const files = readdirSync(path.join(HERE, 'transcripts')).filter((f) => f.endsWith('.txt'));

for (const file of files) {
  test(`golden: ${file}`, async () => {
    const full = path.join(HERE, 'transcripts', file);
    const { config: configName, cases } = parseTranscript(readFileSync(full, 'utf8'));
    const loaded = parseConfigText(readFileSync(path.join(HERE, configName), 'utf8'), {
      kind: 'file',
      path: configName,
    });
    assert.ok(loaded.ok, `config ${configName}: ${JSON.stringify(!loaded.ok && loaded.problems)}`);
    const config = loaded.config;

    const logLines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        logLines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    });
    const logger = createLogger('info', sink);
    const metrics = new Metrics({ processMetrics: false });
    const registry = new MapRegistry({
      env: { baseDir: HERE, recipientDelimiter: config.recipient_delimiter },
      watch: false,
    });
    registries.push(registry);
    // State lives in a fresh SQLite file per transcript, on a clock the transcript moves (`+ wait N`).
    let clock = Date.parse('2026-11-01T00:00:00Z');
    const now = () => clock;
    const store = await openStore({ driver: 'sqlite', path: path.join(stateDir, `${file}.db`), now });
    stores.push(store);
    const stages = buildStages(config, { open: (ref, key) => registry.openRef(ref, key), store, now });
    const server = new PolicyServer(
      createPolicyHandler(config, stages, logger, metrics),
      {
        maxConnections: 10,
        maxLineBytes: 8192,
        maxRequestBytes: 65536,
        maxAttributes: 200,
        idleTimeoutMs: 10_000,
        requestTimeoutMs: 10_000,
        maxPendingRequests: 4,
      },
      logger,
      metrics,
    );
    servers.push(server);
    const [listener] = await server.listen(['127.0.0.1:0']);
    const client = await PolicyClient.connect(listener!.address);
    try {
      for (const [index, c] of cases.entries()) {
        clock += c.wait * 1000;
        const before = logLines.length;
        // Each case is its own message unless it names an instance (limits.txt counts recipients per message).
        const instance = `golden.${file}.${index}`;
        const action = await client.query({ ...BASE, instance, ...c.attributes });
        await new Promise((resolve) => setImmediate(resolve));
        const decision = logLines
          .slice(before)
          .map((l) => JSON.parse(l) as DecisionLog)
          .find((l) => l.event === 'policy.decision');
        assert.ok(decision, `${c.title.join(' ')}: no decision log line`);
        const actual = transcriptLines(action, decision);
        if (UPDATE) c.expected = actual;
        else assert.deepEqual(actual, c.expected, `${file}: ${c.title.join(' ')}`);
      }
    } finally {
      client.close();
    }
    if (UPDATE) writeFileSync(full, render(configName, cases));
  });
}
