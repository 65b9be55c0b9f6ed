/**
 * A Map bounded to `max` entries that forgets the least recently used first. Hand-written because it is a few
 * dozen lines and the obvious shortcuts are slow or leak in V8: using a Map's insertion order (a hit re-inserts
 * the entry, the oldest is `keys().next()`) walks every deleted slot at the front of V8's table on each eviction
 * (thousands when full: 7% of a policy request), and keeping one live iterator instead holds on to every table
 * the Map has outgrown until the iterator moves (unbounded under hits without evictions). So: a Map from key to
 * node and a doubly linked list of the nodes, most recent first; a hit relinks a node and leaves the Map alone.
 */
interface Node<K, V> {
  readonly key: K;
  value: V;
  newer: Node<K, V> | undefined;
  older: Node<K, V> | undefined;
}

export class LruMap<K, V> {
  private readonly nodes = new Map<K, Node<K, V>>();
  private newest: Node<K, V> | undefined;
  private oldest: Node<K, V> | undefined;

  /** `max` of 0 or less keeps nothing. */
  constructor(readonly max: number) {}

  get size(): number {
    return this.nodes.size;
  }

  /** The value, now the most recently used. */
  get(key: K): V | undefined {
    const node = this.nodes.get(key);
    if (!node) return undefined;
    this.unlink(node);
    this.linkNewest(node);
    return node.value;
  }

  /** Stores the value as the most recently used, forgetting the oldest entries beyond `max`. */
  set(key: K, value: V): void {
    const known = this.nodes.get(key);
    if (known) {
      known.value = value;
      this.unlink(known);
      this.linkNewest(known);
      return;
    }
    if (this.max <= 0) return;
    while (this.nodes.size >= this.max && this.oldest) this.delete(this.oldest.key);
    const node: Node<K, V> = { key, value, newer: undefined, older: undefined };
    this.nodes.set(key, node);
    this.linkNewest(node);
  }

  delete(key: K): boolean {
    const node = this.nodes.get(key);
    if (!node) return false;
    this.unlink(node);
    this.nodes.delete(key);
    return true;
  }

  clear(): void {
    this.nodes.clear();
    this.newest = undefined;
    this.oldest = undefined;
  }

  private unlink(node: Node<K, V>): void {
    if (node.newer) node.newer.older = node.older;
    else this.newest = node.older;
    if (node.older) node.older.newer = node.newer;
    else this.oldest = node.newer;
    node.newer = undefined;
    node.older = undefined;
  }

  private linkNewest(node: Node<K, V>): void {
    node.older = this.newest;
    if (this.newest) this.newest.newer = node;
    this.newest = node;
    this.oldest ??= node;
  }
}
