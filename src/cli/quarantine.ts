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
import type { Config } from '../config/schema.js';
import { Quarantine, type QuarantineEntry, releaseHeld } from '../filter/quarantine.js';
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
  const entry = quarantine.entry(id);
  if (!entry) process.stderr.write(`postwarden quarantine: no held message ${JSON.stringify(id)}\n`);
  return entry;
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
      const message = await store.read(entry.id);
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
      const target = loaded.config.filter.reinject;
      const colon = target.lastIndexOf(':');
      const name = loaded.config.hostname || hostname();
      const result = await releaseHeld(
        store,
        entry.id,
        { kind: 'admin' },
        { host: target.slice(0, colon), port: Number(target.slice(colon + 1)), name, timeoutMs: 60_000 },
        values.to,
      );
      if (result.kind === 'released') {
        process.stdout.write(`released ${entry.id} to ${result.recipients.join(', ')}: ${result.response}\n`);
        return EXIT.OK;
      }
      if (result.kind === 'unavailable') {
        process.stderr.write(`postwarden quarantine: ${result.reason}\n`);
        return EXIT.UNAVAILABLE;
      }
      process.stderr.write(
        `postwarden quarantine: ${entry.id} is ${result.kind === 'busy' ? 'being released' : 'gone'}\n`,
      );
      return EXIT.TEMPFAIL;
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
