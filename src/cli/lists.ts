/**
 * `postwarden lists show|add|remove` — the runtime block and allow entries of `policy.lists` (src/admin/lists.ts;
 * the admin API calls the same operations):
 *
 *   show   [LIST] [--json]                 every list (or one): editable, config items, runtime entries
 *   add    LIST ENTRY [--value TEXT]       add (or replace) a runtime entry; TEXT is the reply of a block hit
 *   remove LIST ENTRY                      remove a runtime entry
 *
 * LIST is block.client, block.helo, block.sender, block.recipient, or the same under allow. Entries go to the
 * configured store; a running `serve` sees them within 10 seconds (at once when added through the API).
 *
 * Exit codes: 0 done, 64 usage (an unknown list, an entry that is not one), 65 no such runtime entry, or an entry
 * written in the config, 69 the store is unavailable, 78 config problems or a list backed by a file: table.
 */
import { isListName, LIST_NAMES, ListOps, type ListChange, type ListName } from '../admin/lists.js';
import { RuntimeEntries } from '../maps/runtime.js';
import { EXIT } from '../util/sysexits.js';
import { parse, UsageError } from './args.js';
import { loadOrReport, withStore } from './common.js';
import { print } from './render.js';

export const LISTS_USAGE = `usage: postwarden lists <action> [--config FILE] [options]

  show   [LIST] [--json]            every list (or one): editable, config items, runtime entries
  add    LIST ENTRY [--value TEXT]  add a runtime entry (TEXT: the reply text of a block hit)
  remove LIST ENTRY                 remove a runtime entry

  LIST: ${LIST_NAMES.join(', ')}
`;

function listName(text: string | undefined): ListName {
  if (text === undefined || !isListName(text)) {
    throw new UsageError(`name a list: ${LIST_NAMES.join(', ')}`);
  }
  return text;
}

/** A change that did not happen: its message and exit code. */
function refused(change: ListChange): number {
  switch (change.status) {
    case 'invalid':
      throw new UsageError(change.problem);
    case 'not_editable':
      process.stderr.write(`postwarden lists: ${change.reason}\n`);
      return EXIT.CONFIG;
    case 'in_config':
      process.stderr.write(`postwarden lists: ${change.key} is written in the config: remove it there\n`);
      return EXIT.DATAERR;
    case 'not_found':
      process.stderr.write(`postwarden lists: ${change.key} is not a runtime entry of this list\n`);
      return EXIT.DATAERR;
    default:
      return EXIT.OK;
  }
}

export async function lists(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  if (action === undefined || action === 'help' || action === '--help') {
    process.stdout.write(LISTS_USAGE);
    return action === undefined ? EXIT.USAGE : EXIT.OK;
  }
  const { values, positionals } = parse(
    rest,
    { config: { type: 'string' }, value: { type: 'string' }, json: { type: 'boolean', default: false } },
    true,
  );
  if (!['show', 'add', 'remove'].includes(action))
    throw new UsageError(`unknown action '${action}'\n\n${LISTS_USAGE}`);
  const names = action === 'show' && positionals.length === 0 ? [...LIST_NAMES] : [listName(positionals[0])];
  const entry = positionals[1];
  if (action !== 'show' && (entry === undefined || positionals.length !== 2)) {
    throw new UsageError(`${action} takes a list and one entry`);
  }
  const loaded = loadOrReport(values.config);
  if (!loaded) return EXIT.CONFIG;
  return withStore('lists', loaded, async (store) => {
    const ops = new ListOps(
      loaded.config.policy.lists,
      new RuntimeEntries(store, {
        baseDir: loaded.baseDir,
        recipientDelimiter: loaded.config.recipient_delimiter,
      }),
    );
    const list = names[0] as ListName;
    if (action === 'add') {
      const change = await ops.add(list, entry ?? '', values.value ?? '', 'the admin (CLI)');
      if (change.status !== 'added') return refused(change);
      process.stdout.write(`added ${change.entry.key} to ${list}\n`);
      return EXIT.OK;
    }
    if (action === 'remove') {
      const change = await ops.remove(list, entry ?? '');
      if (change.status !== 'removed') return refused(change);
      process.stdout.write(`removed ${change.key} from ${list}\n`);
      return EXIT.OK;
    }
    const rows = [];
    for (const name of names) {
      const view = await ops.show(name);
      rows.push({
        list: name,
        editable: view.editable,
        config: view.config.join(', '),
        runtime: view.runtime.map((e) => (e.value ? `${e.key} ${e.value}` : e.key)).join(', '),
      });
    }
    print(rows, values.json === true, 'no lists');
    return EXIT.OK;
  });
}
