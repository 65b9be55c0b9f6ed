/**
 * Targets that misbehave on purpose, one way each, at a known input, for the runner's own test
 * (test/fuzz/runner.test.ts): the runner must report each failure, of the right kind, at the right index.
 */
import fc from 'fast-check';
import type { FuzzSession, FuzzTarget } from '../runner.js';

/** The input number at which the target misbehaves. */
export const AT = 3;

export type Misbehaviour = 'property' | 'hang-sync' | 'hang-async' | 'crash' | 'memory';

const kept: unknown[] = [];

function misbehave(how: Misbehaviour): Promise<number> | number {
  switch (how) {
    case 'property':
      throw new Error('the property does not hold');
    case 'hang-sync':
      for (;;) kept.length = 0;
    case 'hang-async':
      return new Promise<number>(() => undefined);
    case 'crash':
      return new Promise<number>(() => {
        setImmediate(() => {
          throw new Error('thrown from a timer');
        });
      });
    case 'memory':
      for (;;) kept.push(new Array<number>(1_000_000).fill(1));
  }
}

export function misbehaving(how: Misbehaviour): FuzzTarget<number> {
  return {
    name: how,
    unit: 'inputs',
    iterations: { quick: 10, full: 10 },
    timeoutMs: 500,
    heapMb: 64,
    input: fc.integer(),
    open: () => {
      let index = 0;
      const session: FuzzSession<number> = { run: () => (index++ === AT ? misbehave(how) : 1) };
      return Promise.resolve(session);
    },
    show: (input) => String(input),
  };
}
