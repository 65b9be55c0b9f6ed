/**
 * `postwarden quarantine list|show|release|delete` — the held messages of `filter.quarantine.dir`:
 *
 *   list    [--limit N] [--json]          id, time, symbol, sender, recipients, size, subject (newest first)
 *   show    ID [--raw]                    the entry and the message's header, or (--raw) the whole message
 *   release ID [--to ADDR]...             re-inject to the original recipients (or the given ones), then remove
 *   delete  ID...                         remove
 *
 * Release goes through the re-injection smtpd (`filter.reinject`), which does not filter again: releasing is the
 * admin's decision. A released message carries `X-Postwarden-Released` in front.
 *
 * Exit codes: 0 done, 64 usage, 65 no such quarantine id, 69 the re-injection smtpd did not take it, 78 config.
 */
import { hostname } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { Config } from '../config/schema.js';
import { Quarantine, type QuarantineEntry } from '../filter/quarantine.js';
import { reinject, ReinjectError } from '../filter/reinject.js';
import { EXIT } from '../util/sysexits.js';
import { parse, UsageError } from './args.js';
import { loadOrReport } from './common.js';
import { print } from './render.js';

export const QUARANTINE_USAGE = `usage: postwarden quarantine <action> [--config FILE] [options]

  list    [--limit N] [--json]     held messages, newest first
  show    ID [--raw]               an entry and the message's header (--raw: the whole message)
  release ID [--to ADDR]...        deliver to the original recipients (or to ADDR), then remove it
  delete  ID...                    remove held messages
`;

function quarantineOf(config: Readonly<Config>, baseDir: string): Quarantine {
  const q = config.filter.quarantine;
  return new Quarantine(path.resolve(baseDir, q.dir), q.retention_days);
}

function entryOrFail(quarantine: Quarantine, id: string): QuarantineEntry | undefined {
  const valid = /^[0-9]{8}-[0-9a-f]{16}$/.test(id);
  const entry = valid ? quarantine.entry(id) : undefined;
  if (!entry) process.stderr.write(`postwarden quarantine: no held message ${JSON.stringify(id)}\n`);
  return entry;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function quarantine(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  if (action === undefined || action === 'help' || action === '--help') {
    process.stdout.write(QUARANTINE_USAGE);
    return action === undefined ? EXIT.USAGE : EXIT.OK;
  }
  const { values, positionals } = parse(
    rest,
    {
      config: { type: 'string' },
      limit: { type: 'string', default: '100' },
      json: { type: 'boolean', default: false },
      raw: { type: 'boolean', default: false },
      to: { type: 'string', multiple: true },
    },
    true,
  );
  const loaded = loadOrReport(values.config);
  if (!loaded) return EXIT.CONFIG;
  const store = quarantineOf(loaded.config, loaded.baseDir);

  switch (action) {
    case 'list': {
      const limit = Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit takes a positive number');
      const entries = store.list().slice(0, limit);
      print(
        entries.map((e) => ({
          id: e.id,
          time: new Date(e.time).toISOString(),
          symbol: e.symbol,
          sender: e.sender || '<>',
          recipients: e.recipients.join(','),
          size: e.size,
          subject: (e.subject ?? '').slice(0, 60),
        })),
        values.json === true,
        'no held messages',
      );
      return EXIT.OK;
    }
    case 'show': {
      if (positionals.length !== 1) throw new UsageError('show takes one quarantine id');
      const entry = entryOrFail(store, positionals[0] ?? '');
      if (!entry) return EXIT.DATAERR;
      const message = await readAll(store.open(entry.id));
      if (values.raw === true) {
        process.stdout.write(message);
        return EXIT.OK;
      }
      const end = message.indexOf('\r\n\r\n');
      process.stdout.write(`${JSON.stringify(entry, null, 2)}\n\n`);
      process.stdout.write(`${message.subarray(0, end < 0 ? message.length : end).toString('utf8')}\n`);
      return EXIT.OK;
    }
    case 'release': {
      if (positionals.length !== 1) throw new UsageError('release takes one quarantine id');
      const entry = entryOrFail(store, positionals[0] ?? '');
      if (!entry) return EXIT.DATAERR;
      const recipients = values.to && values.to.length > 0 ? values.to : [...entry.recipients];
      const name = loaded.config.hostname || hostname();
      const prefix = Buffer.from(
        `X-Postwarden-Released: ${entry.id} by the admin on ${name}; ${new Date().toUTCString()}\r\n`,
      );
      const message = Buffer.concat([prefix, await readAll(store.open(entry.id))]);
      const target = loaded.config.filter.reinject;
      const colon = target.lastIndexOf(':');
      try {
        const response = await reinject(
          { host: target.slice(0, colon), port: Number(target.slice(colon + 1)), name, timeoutMs: 60_000 },
          {
            sender: entry.sender,
            recipients: recipients.map((address) => ({ address })),
            size: message.length,
          },
          () => Readable.from([message]),
          new Map(),
        );
        await store.remove(entry.id);
        process.stdout.write(`released ${entry.id} to ${recipients.join(', ')}: ${response}\n`);
        return EXIT.OK;
      } catch (error) {
        if (!(error instanceof ReinjectError)) throw error;
        process.stderr.write(
          `postwarden quarantine: ${error.message}${error.response ? ` (${error.response})` : ''}\n`,
        );
        return EXIT.UNAVAILABLE;
      }
    }
    case 'delete': {
      if (positionals.length === 0) throw new UsageError('delete takes one or more quarantine ids');
      let missing = 0;
      for (const id of positionals) {
        if (!entryOrFail(store, id)) {
          missing += 1;
          continue;
        }
        await store.remove(id);
        process.stdout.write(`deleted ${id}\n`);
      }
      return missing > 0 ? EXIT.DATAERR : EXIT.OK;
    }
    default:
      throw new UsageError(`unknown action '${action}'\n\n${QUARANTINE_USAGE}`);
  }
}
