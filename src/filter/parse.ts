/**
 * Parses a spooled message into the facts the scanners read (core/content.ts), with mailparser, within bounds:
 * parts beyond `maxParts` or deeper than `maxDepth` are not described (the message is marked `limitsHit`), and
 * each attachment's decoded content is kept only up to `keepBytes` (enough for type sniffing and archive
 * listing; the antivirus reads the raw message whole anyway). Bodies are not converted (no HTML-to-text), so a
 * huge HTML part costs its bytes, not a rendering. A parser error ends the parse with what was found and a
 * problem, never a crash: the message is still scanned and delivered or held.
 */
import { MailParser, type AttachmentStream, type MessageText } from 'mailparser';
import type { Readable } from 'node:stream';
import type { Envelope, HeaderField, MessageFacts, MessagePart } from '../core/content.js';

/** Parts described by name and type only, as a multiple of `maxParts`. */
const METADATA_PARTS_FACTOR = 10;

export interface ParseLimits {
  readonly maxDepth: number;
  readonly maxParts: number;
  /** Decoded bytes kept per attachment. */
  readonly keepBytes: number;
  /** Characters of the text and HTML bodies kept for the content rules and the classifier. */
  readonly maxTextChars: number;
}

function headerField(line: string): HeaderField {
  const colon = line.indexOf(':');
  const name = colon < 0 ? line : line.slice(0, colon);
  const value =
    colon < 0
      ? ''
      : line
          .slice(colon + 1)
          .replace(/\r?\n[ \t]+/g, ' ')
          .trim();
  return { name: name.trim(), value };
}

/** Reads an attachment's content: keeps up to `keep` bytes, counts the rest, always drains and releases. */
function readAttachment(
  attachment: AttachmentStream,
  keep: number,
): Promise<{ size: number; kept: Uint8Array }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let kept = 0;
    const stream = attachment.content;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (kept < keep) {
        const piece = chunk.subarray(0, keep - kept);
        chunks.push(piece);
        kept += piece.length;
      }
    });
    const finish = () => {
      attachment.release?.();
      resolve({ size, kept: Buffer.concat(chunks) });
    };
    stream.once('end', finish);
    stream.once('error', finish);
  });
}

export async function parseMessage(
  raw: Readable,
  envelope: Envelope,
  size: number,
  rawProblems: readonly string[],
  limits: ParseLimits,
): Promise<MessageFacts> {
  const parser = new MailParser({
    skipHtmlToText: true,
    skipTextToHtml: true,
    skipTextLinks: true,
    skipImageLinks: true,
    checksumAlgo: false,
  });
  const headers: HeaderField[] = [];
  const parts: MessagePart[] = [];
  const problems = [...rawProblems];
  let limitsHit = false;
  let described = 0;

  parser.on('headerLines', (lines: { key: string; line: string }[]) => {
    for (const { line } of lines) headers.push(headerField(line));
  });

  const pending: Promise<void>[] = [];
  parser.on('data', (data: AttachmentStream | MessageText) => {
    if (data.type === 'text') {
      const text = data.text ?? '';
      const html = typeof data.html === 'string' ? data.html : '';
      const cut = (body: string) => body.slice(0, limits.maxTextChars);
      if (text !== '') {
        parts.push({
          path: 'text',
          depth: 0,
          contentType: 'text/plain',
          size: Buffer.byteLength(text),
          text: cut(text),
        });
      }
      if (html !== '') {
        parts.push({
          path: 'html',
          depth: 0,
          contentType: 'text/html',
          size: Buffer.byteLength(html),
          text: cut(html),
        });
      }
      if (text.length > limits.maxTextChars || html.length > limits.maxTextChars) limitsHit = true;
      return;
    }
    const path = data.partId ?? String(described + 1);
    const depth = path.split('.').length - 1;
    // Past the bounds a part's content is not kept, but its name and type still are (up to a hard cap), so a
    // banned file cannot hide behind many parts or deep nesting.
    const describe = described < limits.maxParts && depth <= limits.maxDepth;
    const named = described < limits.maxParts * METADATA_PARTS_FACTOR;
    if (!describe) limitsHit = true;
    described += 1;
    pending.push(
      readAttachment(data, describe ? limits.keepBytes : 0).then(({ size: partSize, kept }) => {
        if (!named) return;
        parts.push({
          path,
          depth,
          contentType: (data.contentType || 'application/octet-stream').toLowerCase(),
          ...(data.filename ? { filename: data.filename } : {}),
          size: partSize,
          ...(kept.length > 0 ? { content: kept } : {}),
        });
      }),
    );
  });

  let stopped = false;
  await new Promise<void>((resolve) => {
    parser.once('end', () => resolve());
    parser.once('error', (error: Error) => {
      problems.push(`the MIME parser stopped: ${error.message}`);
      limitsHit = true;
      // An attachment stream open when the parser stops never ends: do not wait for it.
      stopped = true;
      raw.destroy();
      resolve();
    });
    raw.once('error', (error: Error) => {
      problems.push(`the spool could not be read: ${error.message}`);
      resolve();
    });
    raw.pipe(parser);
  });
  if (!stopped) await Promise.all(pending);
  parts.sort((a, b) => a.path.localeCompare(b.path, 'en', { numeric: true }));
  return { envelope, size, headers, parts, problems, limitsHit };
}
