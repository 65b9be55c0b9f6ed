/**
 * The notice that a message was held: to each recipient (a virus, a banned file), to the sender instead when the
 * sender is one of ours (outbound mail: the outside recipients are not told about our quarantine), or to the
 * postmaster (a mail loop, which is nobody's mail), saying what was held, why, its quarantine id and how to get it released. It is
 * sent with the null sender (it must never bounce back into a loop) and `Auto-Submitted: auto-generated`, through
 * the same re-injection smtpd. A notice that cannot be sent is logged, never a reason to answer Postfix 4xx: the
 * message itself is already safe in quarantine.
 *
 * When release links are on (`http.public_url`), a recipient's notice about a message that recipient may release
 * (spam, a banned file: `releasableBy: 'recipient'`, never a virus or a loop) carries a signed link to the
 * quarantine page that releases that message for that recipient only; the sender of outbound mail gets none.
 */
import MailComposer from 'nodemailer/lib/mail-composer';
import { Readable } from 'node:stream';
import type { QuarantineEntry } from './quarantine.js';
import { reinject, type ReinjectTarget } from './reinject.js';

export interface NoticeSettings {
  /** Who gets loop notices and is named as the one to ask (a bare local part gets Postfix's $myorigin). */
  readonly postmaster: string;
  /** This host's name, in the From: address and the text. */
  readonly instance: string;
  /** The signed release link of a held message for one recipient, and when it expires; absent: no links. */
  readonly releaseLink?: (entry: QuarantineEntry, recipient: string) => { url: string; expires: Date };
}

export function noticeText(
  entry: QuarantineEntry,
  settings: NoticeSettings,
  outbound = false,
  link?: { url: string; expires: Date },
): string {
  const opening = outbound
    ? `A message you sent was held by the mail filter on ${settings.instance} and not delivered.`
    : `A message for you was held by the mail filter on ${settings.instance} and not delivered.`;
  const release =
    entry.releasableBy === 'admin'
      ? `Only the postmaster can release it. If you expected this message, write to ${settings.postmaster} and quote the id above.`
      : link
        ? `If you expected this message and trust its sender, you can release it yourself until ${link.expires.toUTCString()}:\n\n  ${link.url}\n\nThe page asks you to confirm. Or ask ${settings.postmaster} to release it, quoting the id above.`
        : `If you expected this message and trust its sender, ask ${settings.postmaster} to release it, quoting the id above.`;
  return [
    opening,
    '',
    ...(outbound ? [`  To:              ${entry.recipients.join(', ')}`] : []),
    `  From (envelope): ${entry.sender === '' ? '<>' : entry.sender}`,
    `  Subject:         ${entry.subject ?? '(none)'}`,
    `  Received:        ${new Date(entry.time).toUTCString()}`,
    `  Reason:          ${entry.reason}`,
    `  Quarantine id:   ${entry.id}`,
    '',
    release,
    '',
    'This notice was generated automatically; replies to it are not read.',
    '',
  ].join('\n');
}

async function compose(
  entry: QuarantineEntry,
  to: string,
  settings: NoticeSettings,
  outbound: boolean,
): Promise<Buffer> {
  const composer = new MailComposer({
    from: `Mail filter <MAILER-DAEMON@${settings.instance}>`,
    // A bare local part is fine in the envelope (Postfix appends $myorigin), not in a To: header.
    to: to.includes('@') ? to : `${to}@${settings.instance}`,
    subject: `Held: ${(entry.subject ?? '(no subject)').slice(0, 120)}`,
    text: noticeText(
      entry,
      settings,
      outbound,
      // Only for the recipient's own copy: never the sender of outbound mail, never the postmaster.
      !outbound && entry.releasableBy === 'recipient' && entry.recipients.includes(to)
        ? settings.releaseLink?.(entry, to)
        : undefined,
    ),
    headers: { 'Auto-Submitted': 'auto-generated', 'X-Postwarden-Quarantine-Id': entry.id },
  });
  return new Promise((resolve, reject) => {
    composer.compile().build((error, message) => (error ? reject(error) : resolve(message)));
  });
}

/** Sends the notices for a held entry; resolves with the recipients that could not be told. */
export async function sendNotices(
  entry: QuarantineEntry,
  audience: 'recipients' | 'postmaster' | 'sender',
  target: ReinjectTarget,
  settings: NoticeSettings,
): Promise<string[]> {
  const recipients =
    audience === 'postmaster'
      ? [settings.postmaster]
      : audience === 'sender'
        ? [entry.sender]
        : [...entry.recipients];
  const failed: string[] = [];
  for (const to of recipients) {
    try {
      const raw = await compose(entry, to, settings, audience === 'sender');
      await reinject(
        target,
        { sender: '', recipients: [{ address: to }], size: raw.length },
        () => Readable.from([raw]),
        new Map(),
      );
    } catch {
      failed.push(to);
    }
  }
  return failed;
}
