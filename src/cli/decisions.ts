/**
 * `postwarden decisions QUEUE_ID [--json]` — every decision recorded about a message (policy and content filter:
 * verdicts, scores, reasons, answer), oldest first, from the configured store; the admin API's
 * `GET /api/v1/decisions/:queueId` reads the same records.
 *
 * Exit codes: 0 found, 64 usage (not a queue id), 65 nothing recorded (never seen, or older than
 * decisions.retention_s), 69 the store is unavailable, 78 config problems.
 */
import { isQueueId, readDecisions } from '../core/decisions.js';
import { EXIT } from '../util/sysexits.js';
import { parse, UsageError } from './args.js';
import { loadOrReport, withStore } from './common.js';
import { print } from './render.js';

export async function decisions(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { config: { type: 'string' }, json: { type: 'boolean', default: false } },
    true,
  );
  const queueId = positionals[0];
  if (queueId === undefined || positionals.length !== 1 || !isQueueId(queueId)) {
    throw new UsageError('usage: postwarden decisions QUEUE_ID [--config FILE] [--json]');
  }
  const loaded = loadOrReport(values.config);
  if (!loaded) return EXIT.CONFIG;
  return withStore('decisions', loaded, async (store) => {
    const records = await readDecisions(store, queueId);
    if (!records) {
      process.stderr.write(`postwarden decisions: nothing recorded for ${queueId}\n`);
      return EXIT.DATAERR;
    }
    if (values.json === true) {
      for (const record of records) process.stdout.write(`${JSON.stringify(record)}\n`);
      return EXIT.OK;
    }
    print(
      records.flatMap((r) =>
        (r.verdicts.length > 0 ? r.verdicts : [undefined]).map((v) => ({
          time: r.time,
          face: r.face,
          state: r.state ?? '',
          action: r.action,
          check: v?.check ?? '',
          symbol: v?.symbol ?? '',
          score: v?.score ?? '',
          reason: v?.reason ?? r.reply ?? '',
        })),
      ),
      false,
      'nothing recorded',
    );
    return EXIT.OK;
  });
}
