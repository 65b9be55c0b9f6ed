/**
 * `postwarden quarantine list|show|release|delete` — the held messages of `filter.quarantine.dir`:
 *
 *   list    [--limit N] [--cursor C] [--json]
 *                                         id, time, symbol, sender, recipients, size, subject (newest first); when
 *                                         more are held, stderr names the --cursor of the next (older) page
 *   show    ID [--raw]                    the entry and the message's header, or (--raw) the whole message
 *   release ID [--to ADDR]...             re-inject to the original recipients (or the given ones), then remove
 *   delete  ID...                         remove
 *
 * The operations are src/admin/quarantine.ts (the admin API calls the same ones): release goes through the
 * re-injection smtpd (`filter.reinject`), which does not filter again, with `X-Postwarden-Released` in front,
 * and delivers a message once however often it is asked.
 *
 * Exit codes: 0 done, 64 usage, 65 no such quarantine id (or released already), 69 the re-injection smtpd did
 * not take it, 78 config.
 */
import { quarantineOpsOf, type ReleaseMarker } from '../admin/quarantine.js';
import { MAX_RELEASE_RECIPIENTS, QUARANTINE_CURSOR } from '../core/quarantine.js';
import { EXIT } from '../util/sysexits.js';
import { parse, UsageError } from './args.js';
import { loadOrReport } from './common.js';
import { print } from './render.js';

export const QUARANTINE_USAGE = `usage: postwarden quarantine <action> [--config FILE] [options]

  list    [--limit N] [--cursor C] [--json]
                                   held messages, newest first (100, or N, a page; --cursor: the next page)
  show    ID [--raw]               an entry and the message's header (--raw: the whole message)
  release ID [--to ADDR]...        deliver to the original recipients (or to ADDR), then remove it
  delete  ID...                    remove held messages
`;

function missing(id: string, release?: ReleaseMarker): number {
  const why = release
    ? `${JSON.stringify(id)} was released already (${release.at} by ${release.by})`
    : `no held message ${JSON.stringify(id)}`;
  process.stderr.write(`postwarden quarantine: ${why}\n`);
  return EXIT.DATAERR;
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
      cursor: { type: 'string' },
      json: { type: 'boolean', default: false },
      raw: { type: 'boolean', default: false },
      to: { type: 'string', multiple: true },
    },
    true,
  );
  const loaded = loadOrReport(values.config);
  if (!loaded) return EXIT.CONFIG;
  const ops = quarantineOpsOf(loaded.config, loaded.baseDir);

  switch (action) {
    case 'list': {
      const limit = Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit takes a positive number');
      const cursor = values.cursor;
      if (cursor !== undefined && !QUARANTINE_CURSOR.test(cursor))
        throw new UsageError('--cursor takes the cursor a listing printed (TIME.ID)');
      const page = ops.list({ limit, ...(cursor === undefined ? {} : { cursor }) });
      const entries = page.items;
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
      if (page.next !== undefined)
        process.stderr.write(`${page.total} held; the next page: --cursor ${page.next}\n`);
      return EXIT.OK;
    }
    case 'show': {
      if (positionals.length !== 1) throw new UsageError('show takes one quarantine id');
      const id = positionals[0] ?? '';
      if (values.raw === true) {
        const raw = ops.raw(id);
        if (!raw) return missing(id, ops.released(id));
        for await (const chunk of raw) process.stdout.write(chunk as Buffer);
        return EXIT.OK;
      }
      const shown = await ops.show(id);
      if (shown.status !== 'found')
        return missing(id, shown.status === 'already_released' ? shown.release : undefined);
      process.stdout.write(`${JSON.stringify(shown.entry, null, 2)}\n\n${shown.header}\n`);
      return EXIT.OK;
    }
    case 'release': {
      if (positionals.length !== 1) throw new UsageError('release takes one quarantine id');
      const id = positionals[0] ?? '';
      if ((values.to?.length ?? 0) > MAX_RELEASE_RECIPIENTS)
        throw new UsageError(`--to takes at most ${MAX_RELEASE_RECIPIENTS} addresses`);
      const released = await ops.release(id, 'the admin (CLI)', values.to);
      switch (released.status) {
        case 'released':
          process.stdout.write(`released ${id} to ${released.recipients.join(', ')}: ${released.response}\n`);
          return EXIT.OK;
        case 'failed':
          process.stderr.write(`postwarden quarantine: ${released.reason}\n`);
          return EXIT.UNAVAILABLE;
        case 'already_released':
          return missing(id, released.release);
        case 'not_found':
          return missing(id);
      }
      return EXIT.DATAERR;
    }
    case 'delete': {
      if (positionals.length === 0) throw new UsageError('delete takes one or more quarantine ids');
      let failed = 0;
      for (const id of positionals) {
        const removed = await ops.remove(id);
        if (removed.status === 'removed') {
          process.stdout.write(`deleted ${id}\n`);
          continue;
        }
        failed += 1;
        missing(id, removed.status === 'already_released' ? removed.release : undefined);
      }
      return failed > 0 ? EXIT.DATAERR : EXIT.OK;
    }
    default:
      throw new UsageError(`unknown action '${action}'\n\n${QUARANTINE_USAGE}`);
  }
}
