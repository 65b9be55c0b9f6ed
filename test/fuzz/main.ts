/**
 * `npm run fuzz`: every fuzz target with its full count (or the quick one with `--quick`), one at a time,
 * printing inputs, units and rate per target; exit 1 on the first failure, with the seed, index, input file
 * and the command that runs that input again. `--target a,b` picks targets; `--seed N` sets the seed
 * (FUZZ_SEED); `--index I` runs input I alone, in this thread, and prints what it did.
 *
 *   node dist/test/fuzz/main.js [--quick] [--target name,...] [--seed N] [--index I]
 */
import { parseArgs } from 'node:util';
import {
  describeFailure,
  formatCounts,
  fuzzSettings,
  loadTarget,
  runInputs,
  runTarget,
  targetNames,
} from './runner.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    target: { type: 'string' },
    seed: { type: 'string' },
    index: { type: 'string' },
  },
});
const env = { ...process.env, ...(values.seed !== undefined ? { FUZZ_SEED: values.seed } : {}) };
const settings = fuzzSettings(env, !values.quick);
const names = values.target ? values.target.split(',') : targetNames();
console.log(`fuzz: seed=${settings.seed} ${settings.full ? 'full' : 'quick'} scale=${settings.scale}`);

let failed = false;
for (const name of names) {
  const result =
    values.index !== undefined
      ? await runInputs(await loadTarget(name), settings, Number(values.index), 1)
      : await runTarget(name, settings, undefined, (done, total) =>
          console.log(`${name}: ${done} of ${total}`),
        );
  console.log(formatCounts(result));
  if (result.failure) {
    console.log(await describeFailure(result, settings));
    failed = true;
    break;
  }
}
process.exit(failed ? 1 : 0);
