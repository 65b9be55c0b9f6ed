/**
 * The chaos suite's faults: what each one does to the running stack and how it is undone, and a seeded schedule
 * of them. Every kind of fault comes up before any comes up twice (a shuffled deck, dealt again when empty);
 * start times are spread over the sending window with seeded jitter, and durations are drawn per fault. Faults
 * on different parts of the stack may overlap (clamd down while DNS is silent); faults on the same part wait for
 * each other (one lane per part), so every fault is undone before the next one of its part begins. `serial`
 * puts every fault in one lane: each is seen alone (a Redis fault while postwarden is down shows nothing).
 */
export const FAULT_KINDS = [
  'kill-postwarden',
  'clamd-stop',
  'clamd-hang',
  'redis-stop',
  'redis-hang',
  'dns-silent',
  'dns-slow',
  'reinject-closed',
  'spool-full',
  'postfix-reload',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** Which part of the stack a fault acts on: faults of one part never overlap. */
const LANE: Readonly<Record<FaultKind, string>> = {
  'kill-postwarden': 'postwarden',
  'clamd-stop': 'clamd',
  'clamd-hang': 'clamd',
  'redis-stop': 'redis',
  'redis-hang': 'redis',
  'dns-silent': 'dns',
  'dns-slow': 'dns',
  'reinject-closed': 'postfix',
  'postfix-reload': 'postfix',
  'spool-full': 'spool',
};

export interface PlannedFault {
  readonly kind: FaultKind;
  /** Milliseconds after the start of sending. */
  readonly atMs: number;
  /** How long the fault lasts before it is undone (a reload has none). */
  readonly durationMs: number;
}

export interface FaultRecord extends PlannedFault {
  startedMs?: number;
  endedMs?: number;
  /** What was done, e.g. `DNS answers delayed 900 ms`. */
  detail?: string;
  /** The fault could not be injected or undone: the run proves nothing about what came after. */
  error?: string;
}

/** Injects one fault, waits `durationMs`, undoes it; resolves with a description. */
export type FaultAction = (fault: PlannedFault) => Promise<string>;

export function planFaults(
  count: number,
  windowMs: number,
  durationMs: readonly [number, number],
  random: () => number,
): PlannedFault[] {
  const deck: FaultKind[] = [];
  const plan: PlannedFault[] = [];
  const slot = windowMs / Math.max(count, 1);
  for (let i = 0; i < count; i++) {
    if (deck.length === 0) {
      deck.push(...FAULT_KINDS);
      for (let j = deck.length - 1; j > 0; j--) {
        const k = Math.floor(random() * (j + 1));
        [deck[j], deck[k]] = [deck[k] as FaultKind, deck[j] as FaultKind];
      }
    }
    const kind = deck.pop() as FaultKind;
    const atMs = Math.round(slot * (i + 0.1 + 0.8 * random()));
    const [min, max] = durationMs;
    plan.push({
      kind,
      atMs,
      durationMs: kind === 'postfix-reload' ? 0 : Math.round(min + (max - min) * random()),
    });
  }
  return plan;
}

/**
 * Runs the plan against `actions` from now on: each fault starts at its time (or when its lane is free) and
 * its record is filled in. Resolves when every fault has been undone.
 */
export async function runFaults(
  plan: readonly PlannedFault[],
  actions: Readonly<Record<FaultKind, FaultAction>>,
  options: { readonly serial: boolean; readonly onFault?: (kind: FaultKind, active: boolean) => void },
): Promise<FaultRecord[]> {
  const start = Date.now();
  const lanes = new Map<string, Promise<void>>();
  const records: FaultRecord[] = plan.map((f) => ({ ...f }));
  const runs = records.map(async (record) => {
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, start + record.atMs - Date.now())));
    const lane = options.serial ? 'all' : LANE[record.kind];
    const before = lanes.get(lane) ?? Promise.resolve();
    const mine = before.then(async () => {
      options.onFault?.(record.kind, true);
      record.startedMs = Date.now() - start;
      try {
        record.detail = await actions[record.kind](record);
      } catch (error) {
        record.error = (error as Error).message.slice(0, 2000);
      } finally {
        record.endedMs = Date.now() - start;
        options.onFault?.(record.kind, false);
      }
    });
    lanes.set(lane, mine);
    await mine;
  });
  await Promise.all(runs);
  return records;
}
