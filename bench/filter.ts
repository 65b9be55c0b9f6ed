/**
 * The `filter` part of `npm run bench` (bench/main.ts): the content filter's throughput against its ceiling,
 * in one run.
 *
 * Starts, each in its own process on free 127.0.0.1 ports: the ceiling, a pass-through SMTP relay written the
 * simplest way (bench/filter-relay.ts: smtp-server in, nodemailer out, 250 only once the next hop took it);
 * postwarden `serve` with the filter on and scanners [loop, sanity, banned]; and postwarden with
 * [loop, sanity, banned, antivirus] on a real clamd (test/harness/clamd.ts, its own EICAR-only database,
 * StreamMaxLength 64M). All three re-inject into one sink, an SMTP server in this process (plain `net`, see
 * Sink) that greets at once, answers as Postfix's re-injection smtpd does, and drains and counts what it gets.
 *
 * The messages are a deterministic set of real-world sizes (plain text, HTML newsletters, PDF and Office
 * attachments, zips, multi-megabyte photo mail; see MIX), generated here, nothing downloaded. Before measuring, every message
 * of the set goes once through each server and must reach the sink intact: same envelope, and the same bytes —
 * for postwarden, after the header fields it puts in front, which must be its own and say `clean`.
 *
 * Load: N connections (nodemailer SMTPConnection), each sending back-to-back (a closed loop). A slice sends the
 * set whole, in its fixed order, the connections taking the next message from one shared queue, again and
 * again until at least BENCH_FILTER_SECONDS / BENCH_FILTER_ROUNDS have passed — always whole passes, so every
 * server is measured on exactly the same messages and msg/s and MB/s compare directly. The servers take turns
 * slice by slice (the first one changing each round). Measured: messages/s, MB/s (10^6 bytes, as sent), p50/p99
 * per message (send → 250), the server's CPU per message from /proc (and clamd's), the generator's CPU. Printed
 * with postwarden's rate as a share of the ceiling's and the issue's targets as PASS/MISS (information only).
 *
 * Then a 50 MiB message goes through each postwarden while a worker thread reads its VmRSS from /proc every
 * 2 ms; VmHWM is reset before (clear_refs 5) and read after. Target: the peak under 300 MiB.
 *
 * `--cpu-prof DIR`: postwarden under node --cpu-prof. Env: BENCH_FILTER_SECONDS (measured per server and
 * connection count, at least; default 10), BENCH_FILTER_ROUNDS (default 5), BENCH_FILTER_CONNECTIONS (default
 * 1,4), BENCH_FILTER_CLAMD (0: without the clamd configuration; it is also left out, with a note in its row,
 * when clamd is not installed), BENCH_FILTER_RSS (0: without the 50 MiB part). A server that does not start, a
 * message not delivered or not intact, an answer other than 250, the sink's counts disagreeing: a BenchError
 * (the part is BROKEN).
 */
import { createCipheriv, createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { stringify } from 'yaml';
import { type ClamdServer, startClamd } from '../test/harness/clamd.js';
import { zip } from '../test/harness/zip.js';
import {
  type Child,
  freePort,
  processCpuMs,
  processMemory,
  registerStopper,
  startChild,
  waitForLine,
} from './children.js';
import { BenchError, measureInTurns } from './load.js';
import { connectionCounts, numberEnv } from './options.js';
import {
  benchPart,
  breaksBy,
  detailTable,
  type PartContext,
  type PartResult,
  type ResultRow,
  say,
} from './report.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MAIN = path.resolve(HERE, '../src/cli/main.js');
const RELAY = path.join(HERE, 'filter-relay.js');
const CLAMD = ['/usr/sbin/clamd', '/usr/local/sbin/clamd'].find((p) => existsSync(p));
const START_TIMEOUT_MS = 30_000;
/** Bound on one message's answer (the 50 MiB one through clamd included). */
const SEND_TIMEOUT_MS = 120_000;
const MIB = 2 ** 20;
const MB = 1e6;
const MAX_MESSAGE_BYTES = 64 * MIB;
const RSS_MESSAGE_BYTES = 50 * MIB;
const RSS_SAMPLE_MS = 2;
const TARGET_RATIO = 0.5;
const TARGET_RSS_BYTES = 300 * MIB;
const INSTANCE = 'mx.example.com';
const EDGE = 'edge.example.com';
const LOCAL_DOMAIN = 'example.com';
/** postwarden's own header fields, the only ones it may put in front of a message. */
const OWN_FIELDS = new Set([
  'x-postwarden-status',
  'x-virus-scanned',
  'x-spam-flag',
  'x-spam-score',
  'x-spam-status',
]);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------------------
// The message set

type Kind = 'text' | 'html' | 'doc' | 'zip' | 'large' | 'huge';

interface BenchMessage {
  readonly index: number;
  readonly kind: Kind;
  readonly from: string;
  readonly to: readonly string[];
  /** 8-bit content: sent with BODY=8BITMIME. */
  readonly eightBit: boolean;
  readonly raw: Buffer;
}

/** The mix, by count; sizes log-uniform in [min, max] bytes (whole message, as sent). */
const MIX: readonly {
  readonly kind: Kind;
  readonly count: number;
  readonly min: number;
  readonly max: number;
  readonly what: string;
}[] = [
  { kind: 'text', count: 61, min: 2_000, max: 5_000, what: 'plain text 2–5 KB (a third 8-bit UTF-8)' },
  {
    kind: 'html',
    count: 30,
    min: 30_000,
    max: 80_000,
    what: 'HTML newsletters 30–80 KB (multipart/alternative, QP)',
  },
  {
    kind: 'doc',
    count: 18,
    min: 200_000,
    max: 2_000_000,
    what: 'a document: PDF (2/3) or DOCX/XLSX, 200 KB–2 MB',
  },
  { kind: 'zip', count: 8, min: 100_000, max: 1_000_000, what: 'a zip of documents, 100 KB–1 MB' },
  { kind: 'large', count: 3, min: 5_000_000, max: 10_000_000, what: '3–6 JPEG photos, 5–10 MB' },
];

/** A small deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Deterministic incompressible bytes: the AES-256-CTR keystream under a key derived from `label`. */
function noise(label: string, length: number): Buffer {
  const key = createHash('sha256').update(label).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()]);
}

const pick = <T>(rnd: () => number, items: readonly T[]): T => items[Math.floor(rnd() * items.length)] as T;
const between = (rnd: () => number, min: number, max: number) => Math.floor(min + rnd() * (max - min + 1));
const logUniform = (rnd: () => number, min: number, max: number) =>
  Math.round(Math.exp(Math.log(min) + rnd() * (Math.log(max) - Math.log(min))));

const WORDS = (
  'the of and to in a is that for it as was with be by on not he this are or his from at which but have an ' +
  'they you were their one all we can her has there been if more when will would who so no out up into ' +
  'about than them time only new some could these two may first then do any like my now over such our man ' +
  'me even most made after also did many before must through back years where much your way well down ' +
  'should because each just those people how too little state good very make world still own see men work ' +
  'long get here between both life being under never day same another know while last might us great old ' +
  'year off come since against go came right used take three meeting invoice report budget quarter project ' +
  'schedule review draft attached please thanks regards update team customer order delivery account'
).split(' ');
const UTF8_WORDS = [
  'Zoë',
  'Jürgen',
  'façade',
  'naïve',
  'Ålesund',
  '12 €',
  'crème brûlée',
  'Łódź',
  'São Paulo',
];
const FIRST = [
  'Alice',
  'Bob',
  'Carol',
  'David',
  'Erin',
  'Frank',
  'Grace',
  'Heidi',
  'Ivan',
  'Judy',
  'Mallory',
];
const LAST = [
  'Smith',
  'Jones',
  'Garcia',
  'Müller',
  'Rossi',
  'Dubois',
  'Novak',
  'Larsen',
  'Kowalski',
  'Silva',
];
const DOMAINS = ['example.net', 'example.org', 'mail.example.net', 'corp.example.org', 'partner.example'];
const LISTS = ['news.example.net', 'offers.example.org', 'weekly.example'];

function sentence(rnd: () => number, eightBit: boolean): string {
  const words = Array.from({ length: between(rnd, 5, 16) }, () =>
    eightBit && rnd() < 0.08 ? pick(rnd, UTF8_WORDS) : pick(rnd, WORDS),
  );
  const text = words.join(' ');
  return `${text.charAt(0).toUpperCase()}${text.slice(1)}${pick(rnd, ['.', '.', '.', '?', '!'])}`;
}

/** Sentences wrapped at 72 columns. */
function paragraph(rnd: () => number, eightBit: boolean, sentences = between(rnd, 2, 6)): string[] {
  const words = Array.from({ length: sentences }, () => sentence(rnd, eightBit))
    .join(' ')
    .split(' ');
  const lines: string[] = [];
  let line = '';
  for (const word of words) {
    if (line !== '' && line.length + 1 + word.length > 72) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}

function hex(rnd: () => number, length: number): string {
  return Array.from({ length }, () => Math.floor(rnd() * 16).toString(16)).join('');
}

function base64Text(label: string, length: number): string {
  return noise(label, Math.ceil((length * 3) / 4) + 3)
    .toString('base64')
    .slice(0, length);
}

/** Base64 in lines of 76 characters, CRLF after each. */
function base64Lines(data: Buffer): Buffer {
  const b64 = Buffer.from(data.toString('base64'), 'latin1');
  const out = Buffer.allocUnsafe(b64.length + Math.ceil(b64.length / 76) * 2);
  let o = 0;
  for (let p = 0; p < b64.length; p += 76) {
    o += b64.copy(out, o, p, Math.min(p + 76, b64.length));
    out[o++] = 13;
    out[o++] = 10;
  }
  return out.subarray(0, o);
}

/** Decoded bytes whose base64 lines take about `encoded` bytes. */
const decodedFor = (encoded: number) => Math.max(1024, Math.floor((encoded * 57) / 78));

/** Quoted-printable (RFC 2045 §6.7), UTF-8, lines of at most 76 characters; the text's lines end in CRLF. */
function quotedPrintable(text: string): string {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const bytes = Buffer.from(line, 'utf8');
    let current = '';
    for (let k = 0; k < bytes.length; k++) {
      const b = bytes[k] as number;
      const last = k === bytes.length - 1;
      const token =
        (b >= 33 && b <= 126 && b !== 61) || ((b === 32 || b === 9) && !last)
          ? String.fromCharCode(b)
          : `=${b.toString(16).toUpperCase().padStart(2, '0')}`;
      if (current.length + token.length > 75) {
        out.push(`${current}=`);
        current = '';
      }
      current += token;
    }
    out.push(current);
  }
  return `${out.join('\r\n')}\r\n`;
}

function encodedWord(text: string): string {
  return /^[\x20-\x7e]*$/.test(text) ? text : `=?UTF-8?B?${Buffer.from(text, 'utf8').toString('base64')}?=`;
}

const BASE_TIME = Date.UTC(2026, 10, 20, 8, 0, 0);
const dateOf = (i: number) => new Date(BASE_TIME + i * 613_000).toUTCString().replace('GMT', '+0000');

interface Envelope {
  readonly from: string;
  readonly fromName: string;
  readonly to: readonly string[];
  readonly domain: string;
}

function personEnvelope(rnd: () => number): Envelope {
  const first = pick(rnd, FIRST);
  const last = pick(rnd, LAST);
  const domain = pick(rnd, DOMAINS);
  const local = `${first}.${last}`.toLowerCase().replace('ü', 'ue');
  const to = Array.from(
    { length: rnd() < 0.8 ? 1 : between(rnd, 2, 3) },
    (_, k) => `${pick(rnd, FIRST).toLowerCase()}${k > 0 ? k : ''}@${LOCAL_DOMAIN}`,
  );
  return { from: `${local}@${domain}`, fromName: `${first} ${last}`, to: [...new Set(to)], domain };
}

/** A header block as it looks after Postfix on the MX queued it: trace, DKIM, authentication results. */
function headerBlock(
  i: number,
  rnd: () => number,
  env: Envelope,
  subject: string,
  fields: readonly string[],
): string {
  const date = dateOf(i);
  const ip = `198.51.100.${between(rnd, 2, 250)}`;
  const queueId = `4X${hex(rnd, 9).toUpperCase()}`;
  const relay = `mail-${hex(rnd, 3)}.${env.domain}`;
  const lines = [
    `Return-Path: <${env.from}>`,
    `Received: from ${relay} (${relay} [${ip}])\r\n\tby ${INSTANCE} (Postfix) with ESMTPS id ${queueId}\r\n` +
      `\tfor <${env.to[0] ?? ''}>; ${date}`,
  ];
  for (let hop = between(rnd, 0, 2); hop > 0; hop--) {
    lines.push(
      `Received: from app${hop}.internal.${env.domain} (app${hop}.internal.${env.domain} [10.1.${hop}.${between(rnd, 2, 250)}])` +
        `\r\n\tby ${relay} (Postfix) with ESMTP id ${hex(rnd, 10).toUpperCase()}; ${date}`,
    );
  }
  const b = base64Text(`dkim-${i}`, 344);
  lines.push(
    `DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=${env.domain}; s=s2026;\r\n` +
      `\tt=${Math.floor(BASE_TIME / 1000) + i * 613}; h=from:to:subject:date:message-id:mime-version:content-type;\r\n` +
      `\tbh=${base64Text(`bh-${i}`, 43)}=;\r\n\tb=${b.slice(0, 70)}\r\n\t ${b.slice(70, 140)}\r\n\t ${b.slice(140, 210)}` +
      `\r\n\t ${b.slice(210, 280)}\r\n\t ${b.slice(280)}`,
    // From the edge host's milter, not INSTANCE: postwarden removes incoming fields that claim its own
    // authserv-id (RFC 8601 §5), and the byte comparison would count that as damage.
    `Authentication-Results: ${EDGE};\r\n\tdkim=pass (2048-bit key) header.d=${env.domain} header.s=s2026 ` +
      `header.b=${b.slice(0, 8)};\r\n\tspf=pass (${EDGE}: domain of ${env.from} designates ${ip} as permitted sender)` +
      ` smtp.mailfrom=${env.from}`,
    `Message-ID: <${hex(rnd, 16)}.${i}@${env.domain}>`,
    `Date: ${date}`,
    `From: ${encodedWord(env.fromName)} <${env.from}>`,
    `To: ${env.to.map((a) => `<${a}>`).join(', ')}`,
    `Subject: ${encodedWord(subject)}`,
    'MIME-Version: 1.0',
    ...fields,
  );
  return `${lines.join('\r\n')}\r\n\r\n`;
}

function textMessage(i: number, rnd: () => number, target: number): BenchMessage {
  const env = personEnvelope(rnd);
  const eightBit = i % 3 === 0;
  const subject = `${rnd() < 0.4 ? 'Re: ' : ''}${sentence(rnd, eightBit).slice(0, 60)}`;
  const head = headerBlock(i, rnd, env, subject, [
    'Content-Type: text/plain; charset=utf-8; format=flowed',
    `Content-Transfer-Encoding: ${eightBit ? '8bit' : '7bit'}`,
    'User-Agent: Mozilla Thunderbird',
  ]);
  const lines = [`Hi ${pick(rnd, FIRST)},`, ''];
  const signature = [
    '',
    '-- ',
    env.fromName,
    `${pick(rnd, ['Sales', 'Accounts', 'Engineering'])}, ${env.domain}`,
  ];
  const size = () => Buffer.byteLength(head + lines.join('\r\n') + signature.join('\r\n'), 'utf8') + 4;
  while (size() < target) {
    const roll = rnd();
    // Lines that start with a dot must survive SMTP's dot-stuffing on every hop.
    if (roll < 0.1) lines.push('...', '');
    else if (roll < 0.13) lines.push('.', '');
    else if (roll < 0.25) lines.push(...paragraph(rnd, eightBit).map((l) => `> ${l}`), '');
    else lines.push(...paragraph(rnd, eightBit), '');
  }
  const body = `${[...lines, ...signature].join('\r\n')}\r\n`;
  return { index: i, kind: 'text', ...env, eightBit, raw: Buffer.from(head + body, 'utf8') };
}

function newsletter(i: number, rnd: () => number, target: number): BenchMessage {
  const list = pick(rnd, LISTS);
  const env: Envelope = {
    from: `bounce-${hex(rnd, 8)}-${i}@${list}`,
    fromName: `${pick(rnd, ['The', 'Your'])} ${pick(rnd, ['Weekly', 'Monthly', 'Daily'])} News`,
    to: [`${pick(rnd, FIRST).toLowerCase()}@${LOCAL_DOMAIN}`],
    domain: list,
  };
  const boundary = `----=_Part_${i}_${hex(rnd, 12)}`;
  const head = headerBlock(i, rnd, env, `${sentence(rnd, false).slice(0, 50)} | issue ${i}`, [
    `Content-Type: multipart/alternative; boundary="${boundary}"`,
    `List-Unsubscribe: <https://${list}/unsubscribe/${hex(rnd, 32)}>, <mailto:unsubscribe-${i}@${list}>`,
    'List-Unsubscribe-Post: List-Unsubscribe=One-Click',
    `List-Id: <weekly.${list}>`,
    'Precedence: bulk',
  ]);
  const link = () =>
    `https://click.${list}/ls/click?upn=${base64Text(`u-${i}-${rnd()}`, 160).replace(/[+/]/g, '-')}`;
  const texts: string[] = [];
  const htmls: string[] = [
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">',
    `<title>Issue ${i}</title><style>body{margin:0;padding:0}table{border-collapse:collapse}` +
      'a{color:#1a73e8;text-decoration:none}.btn{background:#1a73e8;color:#ffffff;border-radius:4px}</style></head>',
    '<body style="margin:0;padding:0;background-color:#f4f4f4"><table role="presentation" width="100%" ' +
      'cellpadding="0" cellspacing="0" border="0" style="max-width:640px;margin:0 auto;background:#ffffff">',
  ];
  let encoded = 0;
  const overhead = Buffer.byteLength(head) + 400;
  while (overhead + encoded < target) {
    const title = sentence(rnd, false).slice(0, 70);
    const body = paragraph(rnd, rnd() < 0.2, between(rnd, 3, 8)).join(' ');
    const url = link();
    const text = `${title}\n${'='.repeat(Math.min(70, title.length))}\n${body}\nRead more: ${url}\n`;
    const html =
      `<tr><td style="padding:24px 32px;font-family:Helvetica,Arial,sans-serif;font-size:16px;line-height:24px;color:#333333">` +
      `<a href="${url}"><img src="https://img.${list}/${hex(rnd, 24)}/${i}.jpg" width="576" height="${between(rnd, 200, 320)}" ` +
      `alt="" style="display:block;border:0;width:100%;height:auto"></a>` +
      `<h2 style="margin:16px 0 8px;font-size:22px;line-height:28px;color:#111111">${title}</h2>\n` +
      `<p style="margin:0 0 16px">${body}</p>\n` +
      `<a class="btn" href="${url}" style="display:inline-block;padding:10px 18px;font-weight:bold">Read more</a></td></tr>`;
    texts.push(text);
    htmls.push(html);
    encoded += quotedPrintable(text).length + quotedPrintable(html).length;
  }
  htmls.push(
    `<tr><td style="padding:24px;font-size:12px;color:#888888">You get this because you subscribed. ` +
      `<a href="https://${list}/unsubscribe/${hex(rnd, 32)}">Unsubscribe</a></td></tr></table></body></html>`,
  );
  const body =
    `This is a multi-part message in MIME format.\r\n\r\n--${boundary}\r\n` +
    'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n' +
    quotedPrintable(texts.join('\n')) +
    `\r\n--${boundary}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n` +
    quotedPrintable(htmls.join('\n')) +
    `\r\n--${boundary}--\r\n`;
  return { index: i, kind: 'html', ...env, eightBit: false, raw: Buffer.from(head + body, 'utf8') };
}

function pdfBytes(label: string, size: number): Buffer {
  const parts: Buffer[] = [Buffer.from('%PDF-1.7\n%\xe2\xe3\xcf\xd3\n', 'latin1')];
  let total = parts[0]?.length ?? 0;
  const trailer = Buffer.from(
    'xref\n0 1\n0000000000 65535 f \ntrailer\n<< /Root 1 0 R >>\nstartxref\n9\n%%EOF\n',
  );
  for (let n = 1; total + trailer.length < size; n++) {
    const length = Math.max(16, Math.min(48 * 1024, size - total - trailer.length - 90));
    const head = Buffer.from(`${n} 0 obj\n<< /Length ${length} /Filter /FlateDecode >>\nstream\n`);
    const tail = Buffer.from('\nendstream\nendobj\n');
    parts.push(head, noise(`${label}-${n}`, length), tail);
    total += head.length + length + tail.length;
  }
  parts.push(trailer);
  return Buffer.concat(parts);
}

function jpegBytes(label: string, size: number): Buffer {
  const head = Buffer.from('ffd8ffe000104a46494600010101004800480000', 'hex');
  return Buffer.concat([head, noise(label, Math.max(0, size - head.length - 2)), Buffer.from([0xff, 0xd9])]);
}

/** A zip archive, entries deflated (the tests' writer, test/harness/zip.ts). */
function zipBytes(entries: readonly { readonly name: string; readonly data: Buffer }[]): Buffer {
  return zip(entries.map((entry) => ({ name: entry.name, data: entry.data, deflate: true })));
}

function csvBytes(rnd: () => number, size: number): Buffer {
  const rows = ['date,account,description,amount,currency'];
  let total = rows[0]?.length ?? 0;
  while (total < size) {
    const row =
      `2026-${String(between(rnd, 1, 12)).padStart(2, '0')}-${String(between(rnd, 1, 28)).padStart(2, '0')},` +
      `${between(rnd, 10000, 99999)},${pick(rnd, WORDS)} ${pick(rnd, WORDS)},${(rnd() * 5000).toFixed(2)},EUR`;
    rows.push(row);
    total += row.length + 2;
  }
  return Buffer.from(`${rows.join('\r\n')}\r\n`);
}

interface Attachment {
  readonly type: string;
  readonly name: string;
  readonly data: Buffer;
}

/** multipart/mixed: a short text part, then the attachments in base64. */
function withAttachments(
  i: number,
  kind: Kind,
  rnd: () => number,
  env: Envelope,
  subject: string,
  attachments: (budget: number) => Attachment[],
  target: number,
): BenchMessage {
  const boundary = `=-${hex(rnd, 20)}`;
  const head = headerBlock(i, rnd, env, subject, [`Content-Type: multipart/mixed; boundary="${boundary}"`]);
  const text =
    `--${boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n` +
    `Hello,\r\n\r\n${paragraph(rnd, false).join('\r\n')}\r\n\r\nBest regards,\r\n${env.fromName}\r\n\r\n`;
  const partHead = (a: Attachment) =>
    `--${boundary}\r\nContent-Type: ${a.type}; name="${a.name}"\r\n` +
    `Content-Disposition: attachment; filename="${a.name}"\r\nContent-Transfer-Encoding: base64\r\n\r\n`;
  const close = `--${boundary}--\r\n`;
  const overhead = Buffer.byteLength(head + text + close) + 200;
  const list = attachments(decodedFor(target - overhead));
  const raw = Buffer.concat([
    Buffer.from(head + text),
    ...list.flatMap((a) => [Buffer.from(partHead(a)), base64Lines(a.data), Buffer.from('\r\n')]),
    Buffer.from(close),
  ]);
  return { index: i, kind, from: env.from, to: env.to, eightBit: false, raw };
}

/** An Office Open XML document (a zip: the parts Word or Excel needs, the text deflated, an image stored). */
function officeBytes(rnd: () => number, label: string, size: number, excel: boolean): Buffer {
  const main = excel ? 'xl/workbook.xml' : 'word/document.xml';
  const type = excel
    ? 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml'
    : 'application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml';
  const text = Array.from(
    { length: 40 },
    () => `<w:p><w:r><w:t>${sentence(rnd, false)}</w:t></w:r></w:p>`,
  ).join('');
  return zipBytes([
    {
      name: '[Content_Types].xml',
      data: Buffer.from(
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">' +
          '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>' +
          `<Default Extension="jpeg" ContentType="image/jpeg"/><Override PartName="/${main}" ContentType="${type}"/></Types>`,
      ),
    },
    {
      name: '_rels/.rels',
      data: Buffer.from(
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">' +
          `<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="${main}"/></Relationships>`,
      ),
    },
    {
      name: main,
      data: Buffer.from(
        `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<document>${text}</document>`,
      ),
    },
    {
      name: `${excel ? 'xl' : 'word'}/media/image1.jpeg`,
      data: jpegBytes(label, Math.max(1024, size - 4096)),
    },
  ]);
}

function pdfMessage(i: number, rnd: () => number, target: number, kind: Kind): BenchMessage {
  const name = pick(rnd, ['invoice', 'statement', 'contract', 'scan', 'offer']);
  return withAttachments(
    i,
    kind,
    rnd,
    personEnvelope(rnd),
    `${name} ${2026}-${between(rnd, 1000, 9999)}`,
    (budget) => [
      {
        type: 'application/pdf',
        name: `${name}-${between(rnd, 100, 999)}.pdf`,
        data: pdfBytes(`pdf-${i}`, budget),
      },
    ],
    target,
  );
}

/** Two in three a PDF; else a Word or Excel file, which is a zip the banned scanner must not hold. */
function documentMessage(i: number, rnd: () => number, target: number): BenchMessage {
  if (i % 3 !== 2) return pdfMessage(i, rnd, target, 'doc');
  const excel = rnd() < 0.5;
  const name = pick(rnd, excel ? ['figures', 'budget', 'forecast'] : ['proposal', 'minutes', 'draft']);
  return withAttachments(
    i,
    'doc',
    rnd,
    personEnvelope(rnd),
    `${name} for review`,
    (budget) => [
      {
        type: excel
          ? 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'
          : 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
        name: `${name}-v${between(rnd, 2, 9)}.${excel ? 'xlsx' : 'docx'}`,
        data: officeBytes(rnd, `office-${i}`, budget, excel),
      },
    ],
    target,
  );
}

function zipMessage(i: number, rnd: () => number, target: number): BenchMessage {
  return withAttachments(
    i,
    'zip',
    rnd,
    personEnvelope(rnd),
    `Documents for the ${pick(rnd, ['audit', 'review', 'meeting', 'tender'])}`,
    (budget) => {
      // The PDFs do not compress; the CSV shrinks about fivefold, so ask for more of it.
      const pdfs = between(rnd, 1, 3);
      const files = Array.from({ length: pdfs }, (_, k) => ({
        name: `report-${k + 1}.pdf`,
        data: pdfBytes(`zip-${i}-${k}`, Math.floor((budget * 0.8) / pdfs)),
      }));
      files.push({ name: 'figures.csv', data: csvBytes(rnd, Math.floor(budget * 0.2 * 4.5)) });
      files.push({ name: 'README.txt', data: Buffer.from(`${paragraph(rnd, false, 6).join('\r\n')}\r\n`) });
      return [{ type: 'application/zip', name: 'documents.zip', data: zipBytes(files) }];
    },
    target,
  );
}

function photoMessage(i: number, rnd: () => number, target: number): BenchMessage {
  return withAttachments(
    i,
    'large',
    rnd,
    personEnvelope(rnd),
    'Photos from the weekend',
    (budget) => {
      const count = between(rnd, 3, 6);
      return Array.from({ length: count }, (_, k) => ({
        type: 'image/jpeg',
        name: `IMG_${2000 + i * 10 + k}.jpg`,
        data: jpegBytes(`jpg-${i}-${k}`, Math.floor(budget / count)),
      }));
    },
    target,
  );
}

/** The set, in a fixed shuffled order (the same in every run). */
function messageSet(): BenchMessage[] {
  const rnd = prng(20261122);
  const made: BenchMessage[] = [];
  let i = 0;
  for (const { kind, count, min, max } of MIX) {
    for (let k = 0; k < count; k++, i++) {
      const target = logUniform(rnd, min, max);
      const own = prng(1000 + i);
      if (kind === 'text') made.push(textMessage(i, own, target));
      else if (kind === 'html') made.push(newsletter(i, own, target));
      else if (kind === 'doc') made.push(documentMessage(i, own, target));
      else if (kind === 'zip') made.push(zipMessage(i, own, target));
      else made.push(photoMessage(i, own, target));
    }
  }
  for (let k = made.length - 1; k > 0; k--) {
    const j = Math.floor(rnd() * (k + 1));
    [made[k], made[j]] = [made[j] as BenchMessage, made[k] as BenchMessage];
  }
  return made;
}

// ---------------------------------------------------------------------------------------------------------
// The sink and the SMTP client side

interface Delivery {
  readonly from: string;
  readonly to: readonly string[];
  readonly bodyType: string | undefined;
  readonly data: Buffer;
}

const CRLF = Buffer.from('\r\n');
const CRLF_DOT = Buffer.from('\r\n.');
const END_OF_DATA = Buffer.from('\r\n.\r\n');
const LF = 0x0a;
const MAX_LINE = 4096;

/** Where the end of DATA (CRLF.CRLF) is, counted from the start of `chunk`, just past it; -1 if not there. */
function endOfData(tail: Buffer, chunk: Buffer): number {
  // A terminator that starts in the previous chunk's last bytes, then one inside this chunk.
  const across = Buffer.concat([tail, chunk.subarray(0, 4)]).indexOf(END_OF_DATA);
  if (across >= 0) return across + END_OF_DATA.length - tail.length;
  const inside = chunk.indexOf(END_OF_DATA);
  return inside >= 0 ? inside + END_OF_DATA.length : -1;
}

/** The message as sent: the leading dot of every line that has one removed (RFC 5321 §4.5.2). */
function unstuff(raw: Buffer): Buffer {
  const parts: Buffer[] = [];
  let from = raw[0] === 0x2e ? 1 : 0;
  for (let k = raw.indexOf(CRLF_DOT, from); k >= 0; k = raw.indexOf(CRLF_DOT, k + 3)) {
    parts.push(raw.subarray(from, k + 2));
    from = k + 3;
  }
  parts.push(raw.subarray(from));
  return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
}

/**
 * The re-injection target of every server: an SMTP server in plain `net`, as a Postfix re-injection smtpd
 * answers (EHLO with PIPELINING, 8BITMIME, SIZE, DSN, XFORWARD; greets at once), that takes each message,
 * counts it and its bytes (after removing the dot-stuffing), and keeps it only when asked. Not smtp-server:
 * smtp-server waits 100 ms before every greeting (its early-talker check), and with one connection per
 * re-injected message that wait, not the servers, would be measured.
 */
class Sink {
  messages = 0;
  bytes = 0;
  keep = false;
  readonly kept: Delivery[] = [];
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor() {
    this.server = net.createServer({ noDelay: true }, (socket) => this.session(socket));
  }

  private session(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let pending: Buffer = Buffer.alloc(0);
    let inData = false;
    let data: Buffer[] = [];
    let tail: Buffer = CRLF;
    let from: string | undefined;
    let to: string[] = [];
    let bodyType: string | undefined;
    const reply = (text: string) => socket.write(`${text}\r\n`);
    const reset = () => {
      from = undefined;
      to = [];
      bodyType = undefined;
    };
    const command = (line: string) => {
      const space = line.indexOf(' ');
      const verb = (space < 0 ? line : line.slice(0, space)).toUpperCase();
      const mail = /^MAIL FROM:\s*<([^>]*)>(.*)$/i.exec(line);
      const rcpt = /^RCPT TO:\s*<([^>]*)>/i.exec(line);
      if (verb === 'EHLO') {
        reset();
        reply('250-sink.example.com\r\n250-PIPELINING\r\n250-SIZE 134217728\r\n250-8BITMIME\r\n250-DSN');
        reply('250 XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT');
      } else if (verb === 'HELO') {
        reset();
        reply('250 sink.example.com');
      } else if (mail) {
        from = mail[1] ?? '';
        bodyType = /\bBODY=(\S+)/i.exec(mail[2] ?? '')?.[1]?.toLowerCase();
        reply('250 2.1.0 Ok');
      } else if (rcpt && from !== undefined) {
        to.push(rcpt[1] ?? '');
        reply('250 2.1.5 Ok');
      } else if (verb === 'DATA' && from !== undefined && to.length > 0) {
        inData = true;
        data = [];
        tail = CRLF;
        reply('354 End data with <CR><LF>.<CR><LF>');
      } else if (verb === 'RSET' || verb === 'NOOP' || verb === 'XFORWARD') {
        if (verb === 'RSET') reset();
        reply('250 2.0.0 Ok');
      } else if (verb === 'QUIT') {
        reply('221 2.0.0 Bye');
        socket.end();
      } else if (verb === 'MAIL' || verb === 'RCPT' || verb === 'DATA') {
        reply('503 5.5.1 Error: bad sequence of commands');
      } else {
        reply('502 5.5.2 Error: command not recognized');
      }
    };
    const delivered = () => {
      const raw = Buffer.concat(data);
      const message = unstuff(raw.subarray(0, raw.length - 3)); // without the final ".\r\n"
      data = [];
      this.messages += 1;
      this.bytes += message.length;
      if (this.keep) this.kept.push({ from: from ?? '', to, bodyType, data: message });
      reset();
      reply(`250 2.0.0 Ok: queued as S${this.messages}`);
    };
    socket.on('data', (input: Buffer) => {
      let chunk = input;
      while (chunk.length > 0) {
        if (inData) {
          const end = endOfData(tail, chunk);
          if (end < 0) {
            data.push(chunk);
            tail = chunk.length >= 4 ? chunk.subarray(-4) : Buffer.concat([tail, chunk]).subarray(-4);
            return;
          }
          data.push(chunk.subarray(0, end));
          inData = false;
          delivered();
          chunk = chunk.subarray(end);
          continue;
        }
        const buffer = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
        let start = 0;
        for (let nl = buffer.indexOf(LF); nl >= 0 && !inData; nl = buffer.indexOf(LF, start)) {
          const line = buffer.toString('latin1', start, nl > start && buffer[nl - 1] === 0x0d ? nl - 1 : nl);
          start = nl + 1;
          command(line);
        }
        chunk = buffer.subarray(start);
        if (inData) {
          pending = Buffer.alloc(0);
          continue;
        }
        pending = Buffer.from(chunk);
        if (pending.length > MAX_LINE) {
          reply('500 5.5.2 Error: line too long');
          socket.destroy();
        }
        return;
      }
    });
    reply('220 sink.example.com ESMTP benchmark sink');
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: '127.0.0.1', port: 0 }, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

async function openClient(port: number): Promise<SMTPConnection> {
  const connection = new SMTPConnection({
    host: '127.0.0.1',
    port,
    name: 'mta.example.com',
    ignoreTLS: true,
    connectionTimeout: 5000,
    greetingTimeout: 5000,
    socketTimeout: SEND_TIMEOUT_MS,
    logger: false,
  });
  connection.on('error', () => {}); // every error also reaches the pending callback
  await new Promise<void>((resolve, reject) => {
    connection.once('error', reject);
    connection.connect(() => {
      connection.off('error', reject);
      resolve();
    });
  });
  return connection;
}

function closeClient(connection: SMTPConnection): void {
  connection.quit();
  setTimeout(() => connection.close(), 1000).unref();
}

/** Sends one message; resolves with the server's answer when it is 250 for every recipient. */
function sendOne(connection: SMTPConnection, message: BenchMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    connection.send(
      { from: message.from, to: [...message.to], size: message.raw.length, use8BitMime: message.eightBit },
      message.raw,
      (error, info) => {
        if (error) reject(error);
        else if (info.rejected.length > 0)
          reject(new Error(`recipients refused: ${info.rejected.join(', ')}`));
        else if (!info.response.startsWith('250')) reject(new Error(`answered ${info.response}`));
        else resolve(info.response);
      },
    );
  });
}

function describe(message: BenchMessage): string {
  return `message #${message.index} (${message.kind}, ${message.raw.length} bytes)`;
}

/** Waits for the 220 greeting on `port`. */
function greeting(port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let text = '';
    const timer = setTimeout(() => finish(new Error('no greeting')), timeoutMs);
    const finish = (error?: Error) => {
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(text);
    };
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (text.includes('\n')) {
        socket.write('QUIT\r\n');
        finish();
      }
    });
    socket.on('error', (error) => finish(error));
  });
}

// ---------------------------------------------------------------------------------------------------------
// The servers

type ServerKey = 'relay' | 'plain' | 'clamd';

interface Server {
  readonly key: ServerKey;
  readonly label: string;
  readonly port: number;
  readonly child: Child;
  readonly logFile?: string;
  readonly spoolDir?: string;
  readonly quarantineDir?: string;
  readonly clamd?: ClamdServer;
  /** Messages it answered 250 for, all phases: its decision lines must match. */
  sent: number;
}

function logTail(file: string | undefined): string {
  if (!file || !existsSync(file)) return '';
  return readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
}

async function waitForSmtp(child: Child, port: number, logFile?: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let exited: number | string | undefined;
  void child.exited.then((code) => {
    exited = code;
  });
  let last = 'no attempt';
  while (Date.now() < deadline) {
    if (exited !== undefined) break;
    try {
      const text = await greeting(port, 1000);
      if (text.startsWith('220')) return;
      last = `greeting ${JSON.stringify(text.trim())}`;
    } catch (error) {
      last = (error as Error).message;
    }
    await sleep(100);
  }
  const why =
    exited !== undefined
      ? `exited (${exited})`
      : `gave no SMTP greeting within ${START_TIMEOUT_MS} ms (${last})`;
  const tail = [child.stderrTail(), logTail(logFile)].filter((t) => t !== '').join('\n');
  throw new BenchError(`${child.name} ${why}${tail ? `; its output:\n${tail}` : ''}`);
}

function postwardenConfig(
  dir: string,
  ports: { filter: number; policy: number; http: number; sink: number },
  clamd: ClamdServer | undefined,
): string {
  return stringify({
    hostname: INSTANCE,
    local_domains: [LOCAL_DOMAIN],
    policy: { listen: `127.0.0.1:${ports.policy}`, checks: ['relay'] },
    filter: {
      enabled: true,
      listen: `127.0.0.1:${ports.filter}`,
      reinject: `127.0.0.1:${ports.sink}`,
      spool_dir: path.join(dir, 'spool'),
      max_message_bytes: MAX_MESSAGE_BYTES,
      scanners: clamd ? ['loop', 'sanity', 'banned', 'antivirus'] : ['loop', 'sanity', 'banned'],
      ...(clamd ? { antivirus: { socket: clamd.socket, timeout_ms: 60_000 } } : {}),
      quarantine: { dir: path.join(dir, 'quarantine') },
    },
    http: { listen: `127.0.0.1:${ports.http}` },
    log: { level: 'info' },
  });
}

async function startPostwarden(
  key: 'plain' | 'clamd',
  root: string,
  sinkPort: number,
  clamd: ClamdServer | undefined,
  cpuProfDir: string | undefined,
): Promise<Server> {
  const dir = path.join(root, `postwarden-${key}`);
  rmSync(dir, { recursive: true, force: true }); // what an attempt that lost its port left
  mkdirSync(dir);
  const ports = {
    filter: await freePort(),
    policy: await freePort(),
    http: await freePort(),
    sink: sinkPort,
  };
  const configPath = path.join(dir, 'postwarden.yml');
  writeFileSync(configPath, postwardenConfig(dir, ports, clamd));
  const logFile = path.join(dir, 'postwarden.log');
  const label = clamd ? 'postwarden + clamd' : 'postwarden';
  const nodeArgs = cpuProfDir
    ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`, `--cpu-prof-name=postwarden-filter-${key}.cpuprofile`]
    : [];
  const child = startChild(label, MAIN, ['serve', '--config', configPath], { stdoutFile: logFile, nodeArgs });
  await waitForSmtp(child, ports.filter, logFile);
  return {
    key,
    label,
    port: ports.filter,
    child,
    logFile,
    spoolDir: path.join(dir, 'spool'),
    quarantineDir: path.join(dir, 'quarantine'),
    ...(clamd ? { clamd } : {}),
    sent: 0,
  };
}

/**
 * Runs `start` again (up to 3 times) when it failed for a port taken between freePort() and the bind: other
 * processes on this host, and the servers' own outgoing connections, draw from the same ephemeral ports.
 */
async function withPortRetry<T>(start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (error) {
      if (attempt >= 3 || !/EADDRINUSE/.test((error as Error).message)) throw error;
      process.stderr.write(`  a port was taken meanwhile; starting again on others\n`);
    }
  }
}

async function startRelay(sinkPort: number): Promise<Server> {
  const port = await freePort();
  const child = startChild('the relay ceiling', RELAY, [String(port), String(sinkPort)]);
  await waitForLine(child, 'ready', START_TIMEOUT_MS);
  return { key: 'relay', label: 'relay ceiling', port, child, sent: 0 };
}

// ---------------------------------------------------------------------------------------------------------
// Checking delivery

/** Where two buffers first differ, with a little of each around it. */
function firstDifference(want: Buffer, got: Buffer): string {
  let k = 0;
  while (k < want.length && k < got.length && want[k] === got[k]) k++;
  const show = (b: Buffer) => JSON.stringify(b.toString('latin1', Math.max(0, k - 30), k + 40));
  const line = want.subarray(0, k).toString('latin1').split('\n').length;
  return `first difference at byte ${k} (line ${line}) of ${want.length}: sent ${show(want)}, got ${show(got)}`;
}

interface PrefixCheck {
  readonly problem?: string;
  readonly fields: readonly string[];
  readonly score?: string;
}

/** postwarden's prefix: complete header fields, all its own, X-Postwarden-Status clean, X-Virus-Scanned iff clamd. */
function checkPrefix(prefix: string, withClamd: boolean): PrefixCheck {
  if (prefix === '') return { problem: 'no header fields in front', fields: [] };
  if (!prefix.endsWith('\r\n'))
    return { problem: `prefix ${JSON.stringify(prefix.slice(-60))} does not end a line`, fields: [] };
  const unfolded = prefix.slice(0, -2).split(/\r\n(?![ \t])/);
  const fields = unfolded.map((f) => f.slice(0, f.indexOf(':')).toLowerCase());
  const strange = unfolded.filter((f, k) => f.indexOf(':') < 1 || !OWN_FIELDS.has(fields[k] ?? ''));
  if (strange.length > 0)
    return { problem: `unexpected fields in front: ${JSON.stringify(strange.slice(0, 3))}`, fields };
  const status = unfolded.find((f) => /^x-postwarden-status:/i.test(f)) ?? '';
  if (!/^x-postwarden-status: clean;/i.test(status))
    return { problem: `status ${JSON.stringify(status)}`, fields };
  if (fields.includes('x-virus-scanned') !== withClamd) {
    return { problem: `X-Virus-Scanned ${withClamd ? 'missing' : 'present without clamd'}`, fields };
  }
  const score = /score=([-\d.]+)(?:; symbols=([^;]+))?/.exec(status);
  return { fields, ...(score ? { score: `${score[1]}${score[2] ? ` ${score[2]}` : ''}` } : {}) };
}

interface VerifyResult {
  /** Observations that do not break delivery: scores given to clean mail, BODY=8BITMIME dropped. */
  readonly notes: string[];
  readonly prefixBytes: number;
}

/** Sends every message of the set once, one at a time, and compares what reached the sink with what was sent. */
async function verifyDelivery(
  server: Server,
  set: readonly BenchMessage[],
  sink: Sink,
): Promise<VerifyResult> {
  const problems: string[] = [];
  const scored = new Map<string, number>();
  let dropped8bit = 0;
  let prefixBytes = 0;
  let fieldSet = '';
  sink.keep = true;
  sink.kept.length = 0;
  const client = await openClient(server.port);
  try {
    for (const message of set) {
      try {
        await sendOne(client, message);
        server.sent += 1;
      } catch (error) {
        problems.push(`${describe(message)}: ${(error as Error).message}`);
        continue;
      }
      const got = sink.kept.splice(0);
      const delivery = got[0];
      if (got.length !== 1 || !delivery) {
        problems.push(`${describe(message)}: ${got.length} deliveries at the sink, want 1`);
        continue;
      }
      if (delivery.from !== message.from || delivery.to.join(',') !== message.to.join(',')) {
        problems.push(
          `${describe(message)}: envelope ${delivery.from} → ${delivery.to.join(',')}, sent ${message.from} → ${message.to.join(',')}`,
        );
        continue;
      }
      if (server.key !== 'relay' && message.eightBit && delivery.bodyType !== '8bitmime') dropped8bit += 1;
      if (server.key === 'relay') {
        if (!delivery.data.equals(message.raw))
          problems.push(`${describe(message)}: ${firstDifference(message.raw, delivery.data)}`);
        continue;
      }
      const cut = delivery.data.length - message.raw.length;
      if (cut < 0 || !delivery.data.subarray(cut).equals(message.raw)) {
        const start = delivery.data.indexOf(message.raw.subarray(0, 64));
        problems.push(
          `${describe(message)}: not intact behind the header fields; ` +
            firstDifference(message.raw, start >= 0 ? delivery.data.subarray(start) : delivery.data),
        );
        continue;
      }
      const prefix = checkPrefix(delivery.data.toString('latin1', 0, cut), server.clamd !== undefined);
      if (prefix.problem) {
        problems.push(`${describe(message)}: ${prefix.problem}`);
        continue;
      }
      prefixBytes = Math.max(prefixBytes, cut);
      fieldSet = prefix.fields.join(', ');
      if (prefix.score && !/^0\.0$/.test(prefix.score)) {
        scored.set(
          `${message.kind} score=${prefix.score}`,
          (scored.get(`${message.kind} score=${prefix.score}`) ?? 0) + 1,
        );
      }
    }
  } finally {
    closeClient(client);
    sink.keep = false;
    sink.kept.length = 0;
  }
  if (problems.length > 0) {
    throw new BenchError(
      `${server.label} did not deliver ${problems.length} of ${set.length} messages intact:\n  ${problems.slice(0, 8).join('\n  ')}`,
    );
  }
  const notes: string[] = [];
  if (fieldSet) notes.push(`adds ${fieldSet} (≤ ${prefixBytes} bytes)`);
  for (const [what, n] of scored) notes.push(`scored clean mail: ${n} × ${what}`);
  const eight = set.filter((m) => m.eightBit).length;
  if (dropped8bit > 0)
    notes.push(`${dropped8bit} of ${eight} messages sent with BODY=8BITMIME reached the sink without it`);
  return { notes, prefixBytes };
}

// ---------------------------------------------------------------------------------------------------------
// Measuring

interface Slice {
  readonly messages: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly latencies: readonly number[];
  /** The same, of the plain-text messages (2–5 KB) only: the cost of a message as such. */
  readonly smallLatencies: readonly number[];
  readonly serverCpuMs: number;
  readonly clamdCpuMs: number;
  readonly generatorCpuMs: number;
}

/**
 * Whole passes of the set through `server` over `connections` connections, until at least `minMs` have passed
 * (minMs 0: one pass). Checks every answer and the sink's counts.
 */
async function runSlice(
  server: Server,
  connections: number,
  set: readonly BenchMessage[],
  minMs: number,
  sink: Sink,
): Promise<Slice> {
  const clients = await Promise.all(Array.from({ length: connections }, () => openClient(server.port)));
  const sinkBefore = { messages: sink.messages, bytes: sink.bytes };
  const latencies: number[] = [];
  const smallLatencies: number[] = [];
  let issued = 0;
  let bytes = 0;
  const cpuStart = processCpuMs(server.child.process.pid) ?? NaN;
  const clamdStart = processCpuMs(server.clamd?.pid) ?? NaN;
  const ownStart = process.cpuUsage();
  const start = process.hrtime.bigint();
  let last = start;
  const next = (): BenchMessage | undefined => {
    if (issued > 0 && issued % set.length === 0 && Number(process.hrtime.bigint() - start) / 1e6 >= minMs) {
      return undefined;
    }
    return set[issued++ % set.length];
  };
  try {
    await Promise.all(
      clients.map(async (client) => {
        for (let message = next(); message; message = next()) {
          const sent = process.hrtime.bigint();
          try {
            await sendOne(client, message);
          } catch (error) {
            throw new BenchError(
              `${server.label}, ${connections} conn: ${describe(message)}: ${(error as Error).message}`,
            );
          }
          last = process.hrtime.bigint();
          latencies.push(Number(last - sent) / 1e6);
          if (message.kind === 'text') smallLatencies.push(Number(last - sent) / 1e6);
          bytes += message.raw.length;
          server.sent += 1;
        }
      }),
    );
  } finally {
    for (const client of clients) closeClient(client);
  }
  const own = process.cpuUsage(ownStart);
  const cpuEnd = processCpuMs(server.child.process.pid) ?? NaN;
  const clamdEnd = processCpuMs(server.clamd?.pid) ?? NaN;
  const delivered = sink.messages - sinkBefore.messages;
  const extra = sink.bytes - sinkBefore.bytes - bytes;
  const maxExtra = server.key === 'relay' ? 0 : latencies.length * 1024;
  if (
    delivered !== latencies.length ||
    extra < 0 ||
    extra > maxExtra ||
    (server.key !== 'relay' && extra === 0)
  ) {
    throw new BenchError(
      `${server.label}, ${connections} conn: ${latencies.length} messages (${bytes} bytes) answered 250, ` +
        `but the sink got ${delivered} (${sink.bytes - sinkBefore.bytes} bytes)`,
    );
  }
  return {
    messages: latencies.length,
    bytes,
    seconds: Number(last - start) / 1e9,
    latencies,
    smallLatencies,
    serverCpuMs: cpuEnd - cpuStart,
    clamdCpuMs: clamdEnd - clamdStart,
    generatorCpuMs: (own.user + own.system) / 1000,
  };
}

interface Row {
  readonly server: ServerKey;
  readonly label: string;
  readonly connections: number;
  readonly messages: number;
  readonly passes: number;
  readonly seconds: number;
  readonly msgPerSecond: number;
  readonly mbPerSecond: number;
  readonly p50Ms: number;
  /** p50 of the plain-text messages only. */
  readonly p50SmallMs: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Server CPU (all threads) per message, ms; NaN if unknown. */
  readonly cpuMsPerMessage: number;
  /** Server CPU over wall time: 1 = one core. */
  readonly cpuLoad: number;
  /** clamd's CPU per message, ms (postwarden + clamd only). */
  readonly clamdCpuMsPerMessage?: number;
  /** This process's CPU (load generator and sink) over wall time. */
  readonly generatorCpuLoad: number;
  /** msg/s over the ceiling's at the same connection count. */
  readonly ratio: number;
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN;
}

function summarize(server: Server, connections: number, slices: readonly Slice[], setSize: number) {
  const sum = (f: (s: Slice) => number) => slices.reduce((n, s) => n + f(s), 0);
  const messages = sum((s) => s.messages);
  const seconds = sum((s) => s.seconds);
  const sorted = Float64Array.from(slices.flatMap((s) => s.latencies)).sort();
  const small = Float64Array.from(slices.flatMap((s) => s.smallLatencies)).sort();
  return {
    server: server.key,
    label: server.label,
    connections,
    messages,
    passes: messages / setSize,
    seconds,
    msgPerSecond: messages / seconds,
    mbPerSecond: sum((s) => s.bytes) / MB / seconds,
    p50Ms: percentile(sorted, 0.5),
    p50SmallMs: percentile(small, 0.5),
    p99Ms: percentile(sorted, 0.99),
    maxMs: sorted[sorted.length - 1] ?? NaN,
    cpuMsPerMessage: sum((s) => s.serverCpuMs) / messages,
    cpuLoad: sum((s) => s.serverCpuMs) / 1000 / seconds,
    ...(server.clamd ? { clamdCpuMsPerMessage: sum((s) => s.clamdCpuMs) / messages } : {}),
    generatorCpuLoad: sum((s) => s.generatorCpuMs) / 1000 / seconds,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Memory while streaming one large message

interface RssResult {
  readonly server: ServerKey;
  readonly label: string;
  readonly messageBytes: number;
  readonly seconds: number;
  readonly beforeBytes: number;
  /** Largest VmRSS seen by the sampler. */
  readonly sampledPeakBytes: number;
  readonly samples: number;
  /** VmHWM after the message: the kernel's own peak since the reset (or since start, if the reset failed). */
  readonly hwmBytes: number;
  readonly hwmReset: boolean;
  readonly afterBytes: number;
}

/** A worker thread reading VmRSS every `everyMs`, so a busy event loop here cannot skip samples. */
function startSampler(
  pid: number,
  everyMs: number,
): { stop(): Promise<{ peakKb: number; samples: number }> } {
  const shared = new Int32Array(new SharedArrayBuffer(12));
  const worker = new Worker(
    `const { readFileSync } = require('node:fs');
     const { workerData } = require('node:worker_threads');
     const view = workerData.view;
     while (Atomics.load(view, 0) === 0) {
       try {
         const m = /^VmRSS:\\s+(\\d+) kB$/m.exec(readFileSync('/proc/' + workerData.pid + '/status', 'utf8'));
         if (m) { const kb = Number(m[1]); if (kb > view[1]) view[1] = kb; view[2] += 1; }
       } catch {}
       Atomics.wait(view, 0, 0, workerData.everyMs);
     }`,
    { eval: true, workerData: { pid, everyMs, view: shared } },
  );
  const done = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return {
    async stop() {
      Atomics.store(shared, 0, 1);
      Atomics.notify(shared, 0);
      await done;
      return { peakKb: shared[1] ?? 0, samples: shared[2] ?? 0 };
    },
  };
}

/** Text and one PDF of 50 MiB in all, like a scanned document sent by mail (base64, as it travels). */
function hugeMessage(): BenchMessage {
  return pdfMessage(9999, prng(9999), RSS_MESSAGE_BYTES, 'huge');
}

async function measureRss(server: Server, message: BenchMessage, sink: Sink): Promise<RssResult> {
  const pid = server.child.process.pid;
  if (pid === undefined) throw new BenchError(`${server.label} has no pid`);
  await sleep(300);
  let hwmReset = true;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {
    hwmReset = false;
  }
  const before = processMemory(pid);
  const sampler = startSampler(pid, RSS_SAMPLE_MS);
  sink.keep = true;
  sink.kept.length = 0;
  const client = await openClient(server.port);
  const started = performance.now();
  try {
    await sendOne(client, message);
    server.sent += 1;
  } catch (error) {
    await sampler.stop();
    throw new BenchError(
      `${server.label}: the ${message.raw.length}-byte message: ${(error as Error).message}`,
    );
  } finally {
    closeClient(client);
    sink.keep = false;
  }
  const seconds = (performance.now() - started) / 1000;
  const got = sink.kept.splice(0);
  const data = got[0]?.data;
  if (got.length !== 1 || !data || !data.subarray(data.length - message.raw.length).equals(message.raw)) {
    throw new BenchError(
      `${server.label}: the ${message.raw.length}-byte message did not reach the sink intact`,
    );
  }
  await sleep(500);
  const { peakKb, samples } = await sampler.stop();
  const after = processMemory(pid);
  return {
    server: server.key,
    label: server.label,
    messageBytes: message.raw.length,
    seconds,
    beforeBytes: before?.rss ?? NaN,
    sampledPeakBytes: peakKb * 1024,
    samples,
    hwmBytes: after?.hwm ?? NaN,
    hwmReset,
    afterBytes: after?.rss ?? NaN,
  };
}

// ---------------------------------------------------------------------------------------------------------
// After the run: postwarden's own account of it

interface LogCheck {
  readonly label: string;
  readonly ok: boolean;
  readonly lines: readonly string[];
}

function checkPostwarden(server: Server): LogCheck {
  const lines = readFileSync(server.logFile ?? '', 'utf8').split('\n');
  let decisions = 0;
  let delivered = 0;
  const outcomes = new Map<string, number>();
  const warnings: string[] = [];
  for (const line of lines) {
    if (!line.startsWith('{')) continue;
    let entry: { level?: unknown; event?: unknown; outcome?: unknown; msg?: unknown; code?: unknown };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      continue;
    }
    if (entry.event === 'filter.decision') {
      decisions += 1;
      if (entry.outcome === 'deliver') delivered += 1;
      else outcomes.set(String(entry.outcome), (outcomes.get(String(entry.outcome)) ?? 0) + 1);
    }
    const level = entry.level;
    if (
      level === 'warn' ||
      level === 'error' ||
      level === 'fatal' ||
      (typeof level === 'number' && level >= 40)
    ) {
      warnings.push(`${String(entry.code ?? '')} ${String(entry.msg ?? '')}`.trim());
    }
  }
  const spoolLeft = server.spoolDir && existsSync(server.spoolDir) ? readdirSync(server.spoolDir).length : 0;
  const held =
    server.quarantineDir && existsSync(server.quarantineDir) ? readdirSync(server.quarantineDir).length : 0;
  const ok =
    decisions === server.sent &&
    delivered === server.sent &&
    warnings.length === 0 &&
    spoolLeft === 0 &&
    held === 0;
  const others = [...outcomes].map(([o, n]) => `${n} ${o}`).join(', ');
  const shown = warnings.length > 0 ? ` (${[...new Set(warnings)].slice(0, 3).join('; ')})` : '';
  const report = [
    `${server.label}: ${decisions} decision lines for ${server.sent} messages answered 250, ` +
      `${delivered} deliver${others ? ` (others: ${others})` : ''}`,
    `${warnings.length} warnings${shown}; spool: ${spoolLeft} files left; quarantine: ${held} files`,
  ];
  return { label: server.label, ok, lines: report };
}

// ---------------------------------------------------------------------------------------------------------
// Output

const fixed = (value: number | undefined, digits: number) =>
  value !== undefined && Number.isFinite(value) ? value.toFixed(digits) : '-';
const percent = (value: number) => (Number.isFinite(value) ? `${Math.round(value * 100)}%` : '-');
const mib = (bytes: number) => (Number.isFinite(bytes) ? `${(bytes / MIB).toFixed(1)} MiB` : '-');

function printTable(rows: readonly Row[]): void {
  const header = [
    'server',
    'conns',
    'msg/s',
    'MB/s',
    'p50 ms',
    'p50 text',
    'p99 ms',
    'max ms',
    'srv CPU ms/msg',
    'srv CPU',
    'clamd ms/msg',
    'gen CPU',
    'passes',
    'ratio',
  ];
  const body = rows.map((r) => [
    r.label,
    String(r.connections),
    fixed(r.msgPerSecond, 1),
    fixed(r.mbPerSecond, 1),
    fixed(r.p50Ms, 1),
    fixed(r.p50SmallMs, 1),
    fixed(r.p99Ms, 1),
    fixed(r.maxMs, 1),
    fixed(r.cpuMsPerMessage, 2),
    percent(r.cpuLoad),
    fixed(r.clamdCpuMsPerMessage, 2),
    percent(r.generatorCpuLoad),
    String(Math.round(r.passes)),
    r.server === 'relay' ? '(ceiling)' : `${(r.ratio * 100).toFixed(1)}%`,
  ]);
  detailTable(header, body, { breaks: breaksBy(rows, (r) => r.connections) });
}

// ---------------------------------------------------------------------------------------------------------
// Main

function clamdVersion(): string {
  try {
    return (
      execFileSync(CLAMD ?? 'clamd', ['--version'], { encoding: 'utf8', timeout: 5000 })
        .trim()
        .split('/')[0] ?? ''
    );
  } catch {
    return 'clamd';
  }
}

function settings() {
  const wantClamd = numberEnv('BENCH_FILTER_CLAMD', 1, 0, 1) === 1;
  return {
    seconds: numberEnv('BENCH_FILTER_SECONDS', 10, 0, 600),
    rounds: Math.round(numberEnv('BENCH_FILTER_ROUNDS', 5, 1, 100)),
    counts: connectionCounts({ variable: 'BENCH_FILTER_CONNECTIONS', fallback: [1, 4], max: 20 }),
    wantClamd,
    wantRss: numberEnv('BENCH_FILTER_RSS', 1, 0, 1) === 1,
    withClamd: wantClamd && CLAMD !== undefined,
  };
}

async function run(context: PartContext, chosen: ReturnType<typeof settings>): Promise<PartResult> {
  let clamdServer: ClamdServer | undefined;
  let sink: Sink | undefined;
  const cleanup = async () => {
    const [clamd, openSink] = [clamdServer, sink];
    clamdServer = sink = undefined;
    await clamd?.destroy();
    await openSink?.close();
  };
  const unregister = registerStopper({ stop: cleanup });
  try {
    return await measureFilter(
      { ...context, ...chosen },
      {
        sink: () => (sink = new Sink()),
        clamd: async () => (clamdServer = await startClamd({ streamMaxLength: '64M' })),
      },
    );
  } finally {
    await cleanup();
    unregister();
  }
}

type FilterSettings = PartContext & ReturnType<typeof settings>;

async function measureFilter(
  { dir, cpuProfDir, seconds, rounds, counts, wantClamd, wantRss, withClamd }: FilterSettings,
  start: { readonly sink: () => Sink; readonly clamd: () => Promise<ClamdServer> },
): Promise<PartResult> {
  const generated = performance.now();
  const set = messageSet();
  const setBytes = set.reduce((n, m) => n + m.raw.length, 0);
  const huge = wantRss ? hugeMessage() : undefined;
  say(
    'set',
    `${set.length} messages, ${(setBytes / MB).toFixed(1)} MB a pass (mean ${Math.round(setBytes / set.length / 1000)} KB), ` +
      `fixed shuffled order, generated in ${Math.round(performance.now() - generated)} ms:`,
    ...MIX.map((m) => {
      const mine = set.filter((s) => s.kind === m.kind);
      const bytes = mine.reduce((n, s) => n + s.raw.length, 0);
      return `${String(m.count).padStart(3)} (${Math.round((m.count * 100) / set.length)}%) ${m.what}: ${(bytes / MB).toFixed(1)} MB`;
    }),
  );

  const sink = start.sink();
  const sinkPort = await sink.listen();
  const servers: Server[] = [await withPortRetry(() => startRelay(sinkPort))];
  servers.push(await withPortRetry(() => startPostwarden('plain', dir, sinkPort, undefined, cpuProfDir)));
  if (withClamd) {
    const clamd = await start.clamd();
    servers.push(await withPortRetry(() => startPostwarden('clamd', dir, sinkPort, clamd, cpuProfDir)));
  }
  say(
    'servers',
    'relay ceiling: bench/filter-relay.ts (smtp-server → buffer → nodemailer, 250 after the sink took it)',
    'postwarden: serve, filter scanners [loop, sanity, banned], log info (a decision line per message)',
    withClamd
      ? `postwarden + clamd: the same plus antivirus, ${clamdVersion()} (EICAR-only database, MaxThreads 4, ` +
          'StreamMaxLength 64M)'
      : `postwarden + clamd: left out (${wantClamd ? 'clamd is not installed: test/harness/install.sh' : 'BENCH_FILTER_CLAMD=0'})`,
    `all re-inject into one sink in this process; spool on ${dir}`,
  );

  process.stderr.write('  checking that every server delivers the set intact\n');
  const notes = new Map<ServerKey, string[]>();
  for (const server of servers) notes.set(server.key, (await verifyDelivery(server, set, sink)).notes);
  say(
    'checked',
    `every message reached the sink once, envelope and bytes intact, from each server`,
    ...servers.flatMap((s) => (notes.get(s.key) ?? []).map((n) => `${s.label}: ${n}`)),
  );
  const sliceMs = (seconds * 1000) / rounds;
  say(
    'method',
    `closed loop; per server and connection count ${rounds} slices taken in turns, each whole passes of the set`,
    `until ≥ ${(sliceMs / 1000).toFixed(1)} s (one pass unmeasured first); connections share one queue`,
  );

  const rows: Row[] = [];
  for (const connections of counts) {
    for (const server of servers) await runSlice(server, connections, set, 0, sink); // warm-up pass
    const slices = await measureInTurns(servers, rounds, `${connections} connection(s)`, (server) =>
      runSlice(server, connections, set, sliceMs, sink),
    );
    const measured = servers.map((s) => summarize(s, connections, slices.get(s.key) ?? [], set.length));
    const ceiling = measured[0]?.msgPerSecond ?? NaN;
    for (const m of measured) rows.push({ ...m, ratio: m.msgPerSecond / ceiling });
  }
  const loadPeak = servers
    .filter((s) => s.key !== 'relay')
    .map((s) => `${s.label} ${mib(processMemory(s.child.process.pid)?.hwm ?? NaN)}`);

  const rss: RssResult[] = [];
  if (huge) {
    for (const server of servers.filter((s) => s.key !== 'relay')) {
      process.stderr.write(`  ${(huge.raw.length / MIB).toFixed(0)} MiB message through ${server.label}\n`);
      rss.push(await measureRss(server, huge, sink));
    }
  }
  await sleep(300);
  const checks = servers.filter((s) => s.key !== 'relay').map(checkPostwarden);

  printTable(rows);
  const verdicts = rows
    .filter((r) => r.server === 'plain')
    .map((r) => ({
      connections: r.connections,
      ratio: r.ratio,
      pass: r.ratio >= TARGET_RATIO,
    }));
  const withAv = rows.filter((r) => r.server === 'clamd');
  say(
    'target',
    `postwarden without clamd ≥ ${TARGET_RATIO * 100}% of the ceiling's msg/s (information, not a test)`,
    ...verdicts.map(
      (v) =>
        `${v.pass ? 'PASS' : 'MISS'}  ${v.connections} conn: ${(v.ratio * 100).toFixed(1)}% of the ceiling`,
    ),
    ...(withAv.length > 0
      ? [
          `with clamd (information): ${withAv.map((r) => `${(r.ratio * 100).toFixed(1)}% at ${r.connections} conn`).join(', ')}`,
        ]
      : []),
  );
  if (rss.length > 0) {
    say(
      'memory',
      `one ${(rss[0]?.messageBytes ?? 0).toLocaleString('en-US')}-byte message (${mib(rss[0]?.messageBytes ?? NaN)}, ` +
        `a PDF mail); VmRSS read every ${RSS_SAMPLE_MS} ms; target: peak < ${mib(TARGET_RSS_BYTES)}`,
      ...rss.flatMap((r) => {
        const peak = Math.max(r.sampledPeakBytes, r.hwmBytes);
        return [
          `${peak < TARGET_RSS_BYTES ? 'PASS' : 'MISS'}  ${r.label}: peak ${mib(peak)}; before ${mib(r.beforeBytes)}, ` +
            `after ${mib(r.afterBytes)}; answered in ${r.seconds.toFixed(2)} s`,
          `      (VmHWM ${mib(r.hwmBytes)}${r.hwmReset ? ' since the reset' : ' since start: no reset'}, ` +
            `sampled ${mib(r.sampledPeakBytes)} in ${r.samples} samples)`,
        ];
      }),
      `VmHWM during the throughput runs: ${loadPeak.join(', ')}`,
    );
  }
  say(
    'columns',
    'msg/s, MB/s (10^6 bytes as sent): whole passes of the set ÷ time from the first send to the last 250;',
    'p50/p99/max: one message, send → 250 (closed loop: at 4 conn this includes waiting behind the others);',
    'p50 text: the same for the plain-text messages (2–5 KB) only, the cost of a message as such;',
    'srv CPU: the server process (all threads) per message and as load (100% = one core); clamd ms/msg: clamd',
    "on top; gen CPU: this process, load generator and sink; ratio: msg/s ÷ the ceiling's (= the MB/s ratio)",
  );
  say(
    'log',
    ...checks.flatMap((c) =>
      c.lines.map((line, i) => `${i > 0 ? '     ' : c.ok ? 'ok   ' : 'CHECK'}  ${line}`),
    ),
  );

  const mixOut = MIX.map((m) => ({ kind: m.kind, count: m.count, min: m.min, max: m.max, what: m.what }));
  const relayAt = (connections: number) =>
    rows.find((r) => r.server === 'relay' && r.connections === connections);
  const resultRows: ResultRow[] = rows
    .filter((r) => r.server !== 'relay')
    .map((r) => ({
      part: 'filter',
      name: `${r.server === 'plain' ? 'scanners loop, sanity, banned' : 'the same + clamd'}, ${r.connections} conn`,
      what: 'msg/s',
      unit: 'msg/s',
      postwarden: r.msgPerSecond,
      peerName: 'pass-through relay',
      peer: relayAt(r.connections)?.msgPerSecond,
      ratio: r.ratio,
      ratioAs: '%' as const,
      ...(r.server === 'plain'
        ? { target: `≥ ${TARGET_RATIO * 100}% of relay`, pass: r.ratio >= TARGET_RATIO }
        : {}),
      notes: `${fixed(r.mbPerSecond, 1)} MB/s; ${fixed(r.cpuMsPerMessage, 1)} ms CPU/msg (relay ${fixed(relayAt(r.connections)?.cpuMsPerMessage, 1)})`,
    }));
  if (wantClamd && !withClamd) {
    resultRows.push({
      part: 'filter',
      name: 'the same + clamd',
      what: 'msg/s',
      unit: 'msg/s',
      postwarden: NaN,
      peerName: 'pass-through relay',
      notes: 'left out: clamd missing (apt-get install -y --no-install-recommends clamav-daemon)',
    });
  }
  for (const r of rss) {
    const peak = Math.max(r.sampledPeakBytes, r.hwmBytes);
    resultRows.push({
      part: 'filter',
      name: `one ${mib(r.messageBytes)} message, ${r.label}`,
      what: 'peak RSS',
      unit: 'MiB',
      postwarden: peak / MIB,
      peerName: '-',
      target: `< ${TARGET_RSS_BYTES / MIB} MiB`,
      pass: peak < TARGET_RSS_BYTES,
      notes: `before ${mib(r.beforeBytes)}; no peer streams it (absolute target)`,
    });
  }
  return {
    rows: resultRows,
    raw: {
      seconds,
      rounds,
      set: { messages: set.length, bytes: setBytes, mix: mixOut },
      rows,
      verdicts,
      rss,
      checks,
    },
  };
}

export const filterPart = benchPart({
  name: 'filter',
  title: 'the content filter, with and without clamd, against a pass-through SMTP relay (issue 5)',
  settings,
  run,
});
