/**
 * What the learn-on-move tests (Dovecot 2.3 and 2.4) do and read: move a message by its test tag over IMAP, as a
 * mail client does, and read postwarden's learn counters from /metrics.
 */
import assert from 'node:assert/strict';
import type { ImapFlow } from 'imapflow';
import { type Postwarden, sleep } from './postwarden.js';

/** A counter's value from /metrics (0 when the series is absent). */
export async function counter(pw: Postwarden, name: string, labels: string): Promise<number> {
  const line = (await pw.metrics()).split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

/** Reports of `cls` that the learn socket queued. */
export const reports = (pw: Postwarden, cls: string) =>
  counter(pw, 'postwarden_learn_socket_reports_total', `class="${cls}",result="queued"`);

/** Polls until the classifier learned `count` messages of `cls` (bounded), and returns how many it did. */
export async function learned(
  pw: Postwarden,
  cls: string,
  count: number,
  timeoutMs = 10_000,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const n = await counter(pw, 'postwarden_learned_total', `class="${cls}",outcome="learned"`);
    if (n >= count || Date.now() > deadline) return n;
    await sleep(100);
  }
}

/** Moves the message whose `X-Pw-Test` is `tag` from `from` to `to` over IMAP (MOVE). */
export async function moveTagged(imap: ImapFlow, tag: string, from: string, to: string): Promise<void> {
  const lock = await imap.getMailboxLock(from);
  try {
    await imap.noop(); // the mailbox may still be selected from before: see what arrived since
    const uids = await imap.search({ header: { 'x-pw-test': tag } }, { uid: true });
    assert.ok(uids && uids.length === 1, `${tag} in ${from}: ${JSON.stringify(uids)}`);
    assert.ok(await imap.messageMove(uids, to, { uid: true }), `MOVE ${tag} ${from} → ${to} failed`);
  } finally {
    lock.release();
  }
}
