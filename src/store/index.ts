/**
 * The store layer: opens the state store the configuration names — `sqlite` (one host; the embedded default)
 * or `redis` (several MX hosts sharing state) — behind the one port in src/core/store.ts.
 *
 * Contract: `openStore` resolves with a Store whether or not the backend answers yet: an unreachable Redis or
 * an unopenable SQLite file gives a store that reports unhealthy and fails each operation with StoreUnavailable
 * (PW-S001) until the backend is back, so the daemon keeps running and policy.on_error decides. For Redis it
 * first waits (at most connectTimeoutMs) for the first connection attempt, so a healthy Redis is ready when
 * the promise resolves.
 *
 * Failure behaviour: options no driver can use throw StoreOptionsError (PW-S003). Backend events go to
 * `onEvent` with stable codes (STORE_EVENT_CODES); nothing here logs.
 */
import type { Store } from '../core/store.js';
import { StoreOptionsError, type StoreEventListener } from './events.js';
import type { RedisStoreOptions } from './redis.js';
import { SqliteStore, type SqliteStoreOptions } from './sqlite.js';

export {
  HealthTracker,
  STORE_EVENT_CODES,
  StoreOptionsError,
  storeEvent,
  type StoreCodeDoc,
  type StoreEvent,
  type StoreEventCode,
  type StoreEventLevel,
  type StoreEventListener,
} from './events.js';
// The Redis driver is loaded only when the config asks for it (ioredis costs a one-host daemon ~20 MB of
// memory), so import RedisStore and its constants from './redis.js'.
export type { RedisStoreOptions } from './redis.js';
export { SQLITE_DEFAULT_TIMEOUT_MS, SqliteStore, type SqliteStoreOptions } from './sqlite.js';

export type StoreOptions =
  ({ readonly driver: 'sqlite' } & SqliteStoreOptions) | ({ readonly driver: 'redis' } & RedisStoreOptions);

export async function openStore(options: StoreOptions, onEvent?: StoreEventListener): Promise<Store> {
  const listener = onEvent ?? options.onEvent;
  const withEvents = listener ? { onEvent: listener } : {};
  switch (options.driver) {
    case 'sqlite': {
      const { driver: _driver, ...rest } = options;
      if (!rest.path) throw new StoreOptionsError('sqlite store: path is required');
      if (rest.timeoutMs !== undefined && (!Number.isInteger(rest.timeoutMs) || rest.timeoutMs < 1)) {
        throw new StoreOptionsError(
          `sqlite store: timeoutMs must be a positive integer (ms): ${rest.timeoutMs}`,
        );
      }
      return new SqliteStore({ ...rest, ...withEvents });
    }
    case 'redis': {
      const { driver: _driver, ...rest } = options;
      const { RedisStore } = await import('./redis.js');
      const store = new RedisStore({ ...rest, ...withEvents });
      await store.settled(rest.connectTimeoutMs ?? 2000);
      return store;
    }
    default:
      throw new StoreOptionsError(
        `unknown store driver: ${String((options as { driver?: unknown }).driver)} (sqlite or redis)`,
      );
  }
}
