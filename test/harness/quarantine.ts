/** Held messages for tests of the quarantine's readers (API, page, CLI): a small virus-held message, as the
 * filter writes one. */
import { Readable } from 'node:stream';
import type { Quarantine } from '../../src/filter/quarantine.js';

/** Holds a message with `subject` for bob@example.org, as the antivirus would; returns its quarantine id. */
export async function holdVirusMessage(quarantine: Quarantine, subject: string): Promise<string> {
  const id = quarantine.newId();
  const message = `From: a@remote.test\r\nTo: bob@example.org\r\nSubject: ${subject}\r\n\r\nbody of ${subject}\r\n`;
  await quarantine.hold(Readable.from([Buffer.from(message)]), {
    id,
    time: Date.now(),
    scanner: 'antivirus',
    symbol: 'VIRUS',
    reason: 'Eicar-Signature',
    releasableBy: 'admin',
    sender: 'a@remote.test',
    recipients: ['bob@example.org'],
    size: message.length,
    subject,
  });
  return id;
}
