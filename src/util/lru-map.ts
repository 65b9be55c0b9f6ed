/**
 * A Map bounded to `max` entries that forgets the least recently used first (a hit moves an entry to the end of
 * the Map's order). Hand-written because it is a few lines over Map, and the one subtle part matters for speed:
 * finding the oldest entry. Asking a fresh `keys().next()` each time walks every deleted slot V8 leaves at the
 * front of the Map's table until it rehashes — thousands per eviction at a few thousand entries, which was 7% of a
 * policy request. One live iterator kept for the Map's life resumes where it stopped instead: it skips deleted
 * entries and visits appended ones, and everything before its position was deleted, so its next key is always
 * the oldest entry.
 */
export class LruMap<K, V extends NonNullable<unknown>> {
  private entries = new Map<K, V>();
  private oldest = this.entries.keys();

  /** `max` of 0 or less keeps nothing. */
  constructor(readonly max: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** The value, now the most recently used. */
  get(key: K): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  /** Stores the value as the most recently used, forgetting the oldest entries beyond `max`. */
  set(key: K, value: V): void {
    this.entries.delete(key);
    if (this.max <= 0) return;
    while (this.entries.size >= this.max) this.forgetOldest();
    this.entries.set(key, value);
  }

  delete(key: K): boolean {
    return this.entries.delete(key);
  }

  clear(): void {
    this.entries = new Map();
    this.oldest = this.entries.keys();
  }

  private forgetOldest(): void {
    let next = this.oldest.next();
    if (next.done) {
      // Only when the Map was empty at some call: a finished iterator stays finished, so start a new one.
      this.oldest = this.entries.keys();
      next = this.oldest.next();
      if (next.done) return;
    }
    this.entries.delete(next.value);
  }
}
