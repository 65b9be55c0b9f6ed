/**
 * The admin's block and allow lists (`policy.lists`), edited while postwarden runs: show, add, remove. The CLI
 * (`postwarden lists`) and the admin API (`/api/v1/lists`) call these.
 *
 * Which lists are editable: the eight of `policy.lists` (`block.client`, `block.helo`, `block.sender`,
 * `block.recipient`, and the same under `allow.`) whose config names only entries and `inline:` tables — the
 * lists that live in the config itself. A list that names a `file:`, `cidr:` or `regexp:` table is refused
 * (`not_editable`): its file is the record, so edit the file and postwarden reloads it. Added entries go to the
 * store (src/maps/runtime.ts) and are searched before the config's entries; entries written in the config are
 * shown but cannot be removed here (`in_config`: edit the config).
 *
 * Outcomes are values; a store that cannot answer rejects with StoreUnavailable (PW-S001).
 */
import type { Config } from '../config/schema.js';
import { isSpec, parseSpec } from '../maps/index.js';
import {
  MAX_RUNTIME_VALUE_CHARS,
  runtimeKey,
  type RuntimeEntries,
  type RuntimeEntry,
} from '../maps/runtime.js';
import { splitInlineEntry } from '../maps/spec.js';

export const LIST_NAMES = [
  'block.client',
  'block.helo',
  'block.sender',
  'block.recipient',
  'allow.client',
  'allow.helo',
  'allow.sender',
  'allow.recipient',
] as const;
export type ListName = (typeof LIST_NAMES)[number];

type ListsConfig = Config['policy']['lists'];

export interface ListView {
  readonly list: ListName;
  readonly editable: boolean;
  /** Why it is not editable. */
  readonly reason?: string;
  /** The config's items for it: entries and table specs, as written. */
  readonly config: readonly string[];
  /** Entries added at run time (searched first). */
  readonly runtime: readonly RuntimeEntry[];
}

export type ListChange =
  | { readonly status: 'added'; readonly entry: RuntimeEntry }
  | { readonly status: 'removed'; readonly key: string }
  | { readonly status: 'not_found'; readonly key: string }
  | { readonly status: 'in_config'; readonly key: string }
  | { readonly status: 'not_editable'; readonly reason: string }
  | { readonly status: 'invalid'; readonly problem: string };

export function isListName(name: string): name is ListName {
  return (LIST_NAMES as readonly string[]).includes(name);
}

/** One line of reply text, bounded (it becomes the SMTP reply of a block hit). */
function cleanValue(value: string): string | undefined {
  const text = value.trim();
  if (text.length > MAX_RUNTIME_VALUE_CHARS || /\p{Cc}/u.test(text)) return undefined;
  return text;
}

export class ListOps {
  constructor(
    private readonly lists: Readonly<ListsConfig>,
    private readonly runtime: RuntimeEntries,
  ) {}

  private configItems(list: ListName): string[] {
    const [kind, target] = list.split('.') as ['block' | 'allow', keyof ListsConfig['block']];
    const ref = this.lists[kind][target];
    return typeof ref === 'string' ? [ref] : [...ref];
  }

  /** Whether a list lives in the config (editable), or the table it names outside it. */
  editable(list: ListName): { readonly ok: true } | { readonly ok: false; readonly reason: string } {
    const table = this.configItems(list).find((item) => isSpec(item) && !item.trim().startsWith('inline:'));
    if (table === undefined) return { ok: true };
    return {
      ok: false,
      reason: `policy.lists.${list} names ${table.trim()}: edit that table (postwarden reloads it), not the runtime entries`,
    };
  }

  /** The config's own entry keys (of entries and inline: tables), canonical. */
  private configKeys(list: ListName): Set<string> {
    const keys = new Set<string>();
    for (const item of this.configItems(list)) {
      const entries = isSpec(item) ? inlineEntries(item) : [item];
      for (const entry of entries) {
        const key = runtimeKey(splitInlineEntry(entry).key);
        if ('key' in key) keys.add(key.key);
      }
    }
    return keys;
  }

  async show(list: ListName): Promise<ListView> {
    const editable = this.editable(list);
    return {
      list,
      editable: editable.ok,
      ...(editable.ok ? {} : { reason: editable.reason }),
      config: this.configItems(list),
      runtime: await this.runtime.entries(list),
    };
  }

  async add(list: ListName, entry: string, value: string, by: string): Promise<ListChange> {
    const editable = this.editable(list);
    if (!editable.ok) return { status: 'not_editable', reason: editable.reason };
    const key = runtimeKey(entry);
    if ('problem' in key) return { status: 'invalid', problem: key.problem };
    const text = cleanValue(value);
    if (text === undefined) {
      return {
        status: 'invalid',
        problem: `the value must be one line of at most ${MAX_RUNTIME_VALUE_CHARS} characters`,
      };
    }
    return { status: 'added', entry: await this.runtime.add(list, key.key, text, by) };
  }

  async remove(list: ListName, entry: string): Promise<ListChange> {
    const editable = this.editable(list);
    if (!editable.ok) return { status: 'not_editable', reason: editable.reason };
    const key = runtimeKey(entry);
    if ('problem' in key) return { status: 'invalid', problem: key.problem };
    if (await this.runtime.remove(list, key.key)) return { status: 'removed', key: key.key };
    return this.configKeys(list).has(key.key)
      ? { status: 'in_config', key: key.key }
      : { status: 'not_found', key: key.key };
  }
}

function inlineEntries(spec: string): readonly string[] {
  try {
    const parsed = parseSpec(spec);
    return parsed.type === 'inline' ? parsed.entries : [];
  } catch {
    return [];
  }
}
