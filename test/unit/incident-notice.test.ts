/**
 * The admin notice of a rate-limit incident: its text names the user, the limit and the API routes; a notice
 * whose SMTP server refuses the connection is given up after its attempts, reported, and recorded on the incident
 * as `failed` (the successful path runs behind real Postfix in test/integration/ratelimit-postfix.test.ts).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { IncidentNotifier, noticeText, type NoticeOutcome } from '../../src/adapters/incident-notice.js';
import { getIncident, openIncident, type Incident } from '../../src/core/ratelimit-incidents.js';
import { openStore } from '../../src/store/index.js';

const incident: Incident = {
  user: 'alice@example.org',
  openedAt: Date.parse('2026-11-01T10:00:00Z'),
  limit: 'per_sasl_user 200/1h',
  client: '203.0.113.9',
  sender: 'alice@example.org',
  queueId: '4A1B2C3D4E',
};

test('the notice says who, since when, which limit, and what to do', () => {
  const { subject, text } = noticeText(incident, 'mx.example.org');
  assert.equal(subject, 'Rate limit: mail of alice@example.org is being held');
  assert.match(text, /went over a rate limit on mx\.example\.org: per_sasl_user 200\/1h/);
  assert.match(text, /Since: +2026-11-01T10:00:00\.000Z/);
  assert.match(text, /First held: +4A1B2C3D4E/);
  assert.match(text, /POST \/api\/v1\/ratelimit\/users\/alice%40example\.org\/release/);
});

test('an unreachable SMTP server: the notice is given up after its attempts and marked failed', async () => {
  // A port nobody listens on: bind one, note it, close it.
  const port = await new Promise<number>((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port: p } = server.address() as net.AddressInfo;
      server.close(() => resolve(p));
    });
  });
  const store = await openStore({ driver: 'sqlite', path: ':memory:' });
  assert.equal(await openIncident(store, incident, 3600), true);
  const outcomes: NoticeOutcome[] = [];
  const done = new Promise<void>((resolve) => {
    const notifier = new IncidentNotifier(
      {
        to: 'postmaster@example.org',
        from: 'postwarden@mx.example.org',
        smtp: `127.0.0.1:${port}`,
        timeoutMs: 1000,
        attempts: 1,
        hostname: 'mx.example.org',
      },
      store,
      (_incident, outcome) => {
        outcomes.push(outcome);
        if (outcome === 'failed') {
          notifier.close();
          resolve();
        }
      },
    );
    notifier.incidentOpened(incident);
  });
  await done;
  assert.deepEqual(outcomes, ['failed']);
  assert.equal((await getIncident(store, 'alice@example.org'))?.notice, 'failed');
  await store.close();
});
