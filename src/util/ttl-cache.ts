/**
 * A bounded cache whose entries expire: least recently used entries go first when it is full (a Map's
 * insertion order, refreshed on every hit), and an entry past its time is never returned. Hand-written because
 * it is a dozen lines over Map and the product needs nothing more (no size weights, no background sweeping:
 * expired entries leave when they are met or pushed out).
 */
export class TtlCache<V> {
  private readonly entries = new Map<string, { readonly value: V; readonly expires: number }>();

  constructor(
    private readonly maxEntries: number,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get(key: string): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);
    if (entry.expires <= this.now()) return undefined;
    this.entries.set(key, entry);
    return entry.value;
  }

  /** Keeps `value` for `ttlMs`; a TTL of 0 or less, or a cache of size 0, keeps nothing. */
  set(key: string, value: V, ttlMs: number): void {
    if (ttlMs <= 0 || this.maxEntries <= 0) return;
    this.entries.delete(key);
    while (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.entries.delete(oldest.value);
    }
    this.entries.set(key, { value, expires: this.now() + ttlMs });
  }

  clear(): void {
    this.entries.clear();
  }
}
