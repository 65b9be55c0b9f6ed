/**
 * `npm run test:chaos`: the fault-injection suite in its full form (at least 1 000 messages and 20 faults), or
 * the quick one with `--quick`; prints the report (docs/reliability.md#fault-injection) and exits 1 when a
 * message was lost, delivered unscanned, duplicated without a cause, refused with a 5xx or bounced, or when
 * postwarden crashed.
 *
 *   node dist/test/chaos/main.js [--quick] [--seed N] [--messages N] [--faults N] [--window-s N]
 */
import { parseArgs } from 'node:util';
import { renderReport } from './count.js';
import { FULL, QUICK, runChaos } from './suite.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    seed: { type: 'string' },
    messages: { type: 'string' },
    faults: { type: 'string' },
    'window-s': { type: 'string' },
  },
});
const base = values.quick ? QUICK : FULL;
const number = (value: string | undefined, fallback: number) =>
  value === undefined ? fallback : Number(value);
const options = {
  ...base,
  seed: number(values.seed ?? process.env['CHAOS_SEED'], base.seed),
  messages: number(values.messages, base.messages),
  faults: number(values.faults, base.faults),
  windowMs: number(values['window-s'], base.windowMs / 1000) * 1000,
  log: (line: string) => console.log(line),
};
const report = await runChaos(options);
console.log(renderReport({ ...report, seed: options.seed }));
process.exitCode = report.count.failed === 0 && report.problems.length === 0 ? 0 : 1;
