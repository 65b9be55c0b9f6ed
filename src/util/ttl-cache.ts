/**
 * A bounded cache whose entries expire: least recently used entries go first when it is full (LruMap), and an
 * entry past its time is never returned. Hand-written because it is a dozen lines and the product needs nothing
 * more (no size weights, no background sweeping: expired entries leave when they are met or pushed out).
 */
import { LruMap } from './lru-map.js';

export class TtlCache<V> {
  private readonly entries: LruMap<string, { readonly value: V; readonly expires: number }>;

  constructor(
    maxEntries: number,
    private readonly now: () => number = Date.now,
  ) {
    this.entries = new LruMap(maxEntries);
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: string): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expires > this.now()) return entry.value;
    this.entries.delete(key);
    return undefined;
  }

  /** Keeps `value` for `ttlMs`; a TTL of 0 or less, or a cache of size 0, keeps nothing. */
  set(key: string, value: V, ttlMs: number): void {
    if (ttlMs <= 0) {
      this.entries.delete(key);
      return;
    }
    this.entries.set(key, { value, expires: this.now() + ttlMs });
  }

  clear(): void {
    this.entries.clear();
  }
}
