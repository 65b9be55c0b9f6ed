/**
 * Policy requests through the whole in-process path of `serve`: encoded as Postfix would, decoded in random
 * pieces, parsed, and answered by the real handler with every check on (DNS from a stub that answers from the
 * name; greylisting in memory). Properties: each request decodes to exactly the attributes sent and gets one
 * answer in the action grammar; no check throws and the handler never fails (PW-P009).
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeRequest, PolicyDecoder } from '../../../src/policy/codec.js';
import type { Connection } from '../../../src/policy/server.js';
import { assertAnswer, openPolicy, requestAttributes } from '../policy-inputs.js';
import type { FuzzTarget } from '../runner.js';

const LIMITS = { maxLineBytes: 8192, maxRequestBytes: 65_536, maxAttributes: 200 };

interface Input {
  /** Requests of one connection, in order (a message's CONNECT … END-OF-MESSAGE, or anything). */
  readonly requests: readonly Record<string, string>[];
  readonly cut: number;
}

const input: fc.Arbitrary<Input> = fc.record({
  requests: fc.array(requestAttributes, { minLength: 1, maxLength: 4 }),
  cut: fc.double({ min: 0, max: 1, noNaN: true }),
});

let connections = 0;

const target: FuzzTarget<Input> = {
  name: 'policy-pipeline',
  unit: 'requests',
  iterations: { quick: 3000, full: 450_000 },
  timeoutMs: 5000,
  heapMb: 512,
  input,
  async open() {
    const policy = await openPolicy();
    return {
      async run({ requests, cut }: Input): Promise<number> {
        const connection: Connection = { id: ++connections, state: {} };
        const decoder = new PolicyDecoder(LIMITS);
        for (const sent of requests) {
          const bytes = Buffer.from(encodeRequest(sent));
          const at = Math.floor(cut * bytes.length);
          const events = [...decoder.push(bytes.subarray(0, at)), ...decoder.push(bytes.subarray(at))];
          assert.equal(events.length, 1, `one request in, ${events.length} events out`);
          const event = events[0]!;
          if (event.kind !== 'request')
            assert.fail(`a well-formed request refused: ${JSON.stringify(event)}`);
          assert.equal(Object.keys(event.attributes).length, Object.keys(sent).length);
          for (const [name, value] of Object.entries(sent)) assert.equal(event.attributes[name], value, name);
          const action = await policy.handler(event.attributes, connection);
          assertAnswer(policy, action, () => JSON.stringify(sent));
        }
        return requests.length;
      },
      close: () => policy.close(),
    };
  },
  show: ({ requests }) => requests.map((r) => encodeRequest(r)).join(''),
};

export default target;
