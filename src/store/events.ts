/**
 * Stable codes of the store layer: the errors its operations raise (PW-S001, PW-S002, PW-S003) and the events a
 * store reports about its backend through `onEvent` (it never logs by itself). Docs are generated from
 * STORE_EVENT_CODES.
 */
import type { StoreDriver } from '../core/store.js';

export type StoreEventLevel = 'info' | 'warn' | 'error';

export interface StoreCodeDoc {
  readonly level: StoreEventLevel;
  readonly summary: string;
  readonly fix: string;
}

export const STORE_EVENT_CODES = Object.freeze({
  'PW-S001': {
    level: 'error',
    summary:
      'The state store could not answer in time (Redis down or failing over, SQLite locked, disk full); the check that needed it failed and policy.on_error decided.',
    fix: 'Read the reason: start or repair Redis (`redis-cli ping`), free disk space under the SQLite file, or find the process holding its lock; the store recovers by itself.',
  },
  'PW-S002': {
    level: 'error',
    summary:
      'A stored value does not suit the operation (a counter that is not an integer, a Redis key of another type).',
    fix: 'Another program writes under postwarden’s keys: give postwarden its own store.key_prefix or Redis database, then delete the key named.',
  },
  'PW-S003': {
    level: 'error',
    summary: 'The store options are not valid (unknown driver, Redis without url or sentinels, bad timeout).',
    fix: 'Correct the store section of the configuration; `postwarden check-config` names the key.',
  },
  'PW-S010': {
    level: 'warn',
    summary: 'The state store stopped answering; every operation fails with PW-S001 until it is back.',
    fix: 'Read the reason; start or repair Redis, or fix the SQLite file or its directory. Nothing to restart in postwarden.',
  },
  'PW-S011': {
    level: 'info',
    summary: 'The state store answers again.',
    fix: 'Nothing to do.',
  },
  'PW-S012': {
    level: 'warn',
    summary:
      'Redis answered READONLY: a write reached a replica (usually a master demoted by a Sentinel failover); the client reconnects and asks Sentinel for the new master.',
    fix: 'Nothing if it stops by itself. If it repeats, the store url points at a replica: point it at the master or use store.sentinels.',
  },
} satisfies Record<string, StoreCodeDoc>);

export type StoreEventCode = keyof typeof STORE_EVENT_CODES;

export interface StoreEvent {
  readonly code: StoreEventCode;
  readonly level: StoreEventLevel;
  readonly driver: StoreDriver;
  readonly message: string;
}

export type StoreEventListener = (event: StoreEvent) => void;

/** Builds an event with its code's documented level. */
export function storeEvent(code: StoreEventCode, driver: StoreDriver, message: string): StoreEvent {
  return { code, level: STORE_EVENT_CODES[code].level, driver, message };
}

/** Thrown by openStore for options no driver can use (PW-S003). */
export class StoreOptionsError extends Error {
  readonly code = 'PW-S003';
}

/**
 * Tracks healthy/unhealthy and reports each outage once: PW-S010 when the store stops answering, PW-S011 when
 * it answers again after that. A store may start unhealthy (not connected yet) without an outage being
 * reported. A listener that throws is ignored: reporting must never break an operation.
 */
export class HealthTracker {
  private failure: string | undefined;
  private announced = false;

  constructor(
    private readonly driver: StoreDriver,
    private readonly onEvent: StoreEventListener | undefined,
    initialFailure?: string,
  ) {
    this.failure = initialFailure;
  }

  get reason(): string | undefined {
    return this.failure;
  }

  ok(): void {
    if (this.failure === undefined) return;
    this.failure = undefined;
    if (this.announced) this.emit('PW-S011', 'store answers again');
    this.announced = false;
  }

  failed(reason: string): void {
    this.failure = reason;
    if (this.announced) return;
    this.announced = true;
    this.emit('PW-S010', reason);
  }

  emit(code: StoreEventCode, message: string): void {
    try {
      this.onEvent?.(storeEvent(code, this.driver, message));
    } catch {
      // A listener's fault is not the store's.
    }
  }
}
