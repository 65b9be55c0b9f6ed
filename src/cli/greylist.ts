/**
 * `postwarden greylist list|delete|allow` — inspect and edit the greylisting state in the configured store:
 *
 *   list   [--network CIDR] [--sender ADDR] [--recipient ADDR] [--awl] [--limit N] [--json]
 *   delete (--network CIDR | --sender ADDR | --recipient ADDR | --triplet "net|sender|rcpt") [--awl]
 *   allow  --network CIDR
 *
 * The operations live in src/admin/greylist.ts (the admin API calls the same ones); this file is the argv
 * handling on top. A listing cut by --limit, or a search limited by the store's scan limit, is said on stderr.
 *
 * Exit codes: 0 done (also when nothing matched: "0 removed"), 64 bad usage (unknown option, a network that is
 * not one, `allow` with `awl_after: 0`), 69 the store is unavailable (PW-S001), 78 config problems.
 */
import {
  allowNetwork,
  checkAllow,
  deleteAwl,
  deleteGreylist,
  deleteTriplets,
  GreylistInputError,
  listAwl,
  listGreylist,
  parseFilter,
  parseNetwork,
  parseTriplet,
  type Cut,
  type GreylistAdminSettings,
  type Removal,
} from '../admin/greylist.js';
import { MAX_SCAN_LIMIT, type Store } from '../core/store.js';
import { EXIT } from '../util/sysexits.js';
import { parse, UsageError } from './args.js';
import { loadOrReport, withStore, type Loaded } from './common.js';
import { print } from './render.js';

export const GREYLIST_USAGE = `usage: postwarden greylist <action> [--config FILE] [options]

  list   [--network CIDR] [--sender ADDR] [--recipient ADDR] [--limit N] [--json]
                            triplets: network, sender, recipient, state, first seen, expiry
  list   --awl [--network CIDR] [--limit N] [--json]
                            auto-whitelist entries: network, passes, whitelisted, expiry
  delete --network CIDR | --sender ADDR | --recipient ADDR | --triplet "NET|SENDER|RCPT"
                            remove matching triplets; prints how many
  delete --awl --network CIDR
                            remove a network's auto-whitelist entry
  allow  --network CIDR     auto-whitelist a network now (awl_after passes, for max_age_s)

  CIDR is a client address (its /24 or /64, as greylisting groups clients) or such a network;
  list and delete also take a wider one. Filters given together must all match.
  --limit: 1 to ${MAX_SCAN_LIMIT} (default 1000).
`;

const DEFAULT_LIMIT = 1000;

function settingsOf(loaded: Loaded): GreylistAdminSettings {
  return { greylist: loaded.config.policy.greylist, recipientDelimiter: loaded.config.recipient_delimiter };
}

/** Input errors become usage errors (exit 64) with the message as given. */
function usage<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof GreylistInputError) throw new UsageError(error.message);
    throw error;
  }
}

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

function reportCut(cut: Cut, limit: number, what: string): void {
  if (cut === 'limit') {
    process.stderr.write(
      `postwarden greylist: output cut at ${limit} ${what} (--limit); narrow the filter or raise --limit (at most ${MAX_SCAN_LIMIT})\n`,
    );
  } else if (cut === 'scan') {
    process.stderr.write(
      `postwarden greylist: searched only the first ${MAX_SCAN_LIMIT} ${what} in the store; more may match\n`,
    );
  }
}

function parseLimit(text: string): number {
  if (!/^\d{1,6}$/.test(text) || Number(text) < 1 || Number(text) > MAX_SCAN_LIMIT) {
    throw new UsageError(`--limit takes a number from 1 to ${MAX_SCAN_LIMIT}: '${text}'`);
  }
  return Number(text);
}

async function list(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    config: { type: 'string' },
    network: { type: 'string' },
    sender: { type: 'string' },
    recipient: { type: 'string' },
    awl: { type: 'boolean', default: false },
    limit: { type: 'string', default: String(DEFAULT_LIMIT) },
    json: { type: 'boolean', default: false },
  });
  const limit = parseLimit(values.limit);
  if (values.awl && (values.sender !== undefined || values.recipient !== undefined)) {
    throw new UsageError('--awl lists networks: filter it with --network only');
  }
  const loaded = loadOrReport(values.config);
  if (!loaded) return EXIT.CONFIG;
  const settings = settingsOf(loaded);
  const filter = usage(() =>
    parseFilter(
      {
        ...(values.network !== undefined ? { network: values.network } : {}),
        ...(values.sender !== undefined ? { sender: values.sender } : {}),
        ...(values.recipient !== undefined ? { recipient: values.recipient } : {}),
      },
      settings,
    ),
  );
  return withStore('greylist', loaded, async (store) => {
    if (values.awl) {
      const { items, cut } = await listAwl(store, filter.network, limit, settings);
      const rows = items.map((a) => ({
        network: a.network,
        passes: a.passes,
        whitelisted: a.whitelisted,
        expires: iso(a.expiresAt),
      }));
      print(rows, values.json, 'no auto-whitelist entries');
      reportCut(cut, limit, 'networks');
      return EXIT.OK;
    }
    const { items, cut } = await listGreylist(store, filter, limit);
    const rows = items.map((t) => ({
      network: t.network,
      sender: t.sender,
      recipient: t.recipient,
      state: t.state,
      first_seen: iso(t.firstSeen),
      expires: iso(t.expiresAt),
    }));
    print(rows, values.json, 'no triplets');
    reportCut(cut, limit, 'triplets');
    return EXIT.OK;
  });
}

async function remove(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    config: { type: 'string' },
    network: { type: 'string' },
    sender: { type: 'string' },
    recipient: { type: 'string' },
    triplet: { type: 'string' },
    awl: { type: 'boolean', default: false },
  });
  const { network, sender, recipient, triplet } = values;
  if (triplet !== undefined && (network !== undefined || sender !== undefined || recipient !== undefined)) {
    throw new UsageError('--triplet names one triplet: give it alone');
  }
  if (values.awl && (triplet !== undefined || sender !== undefined || recipient !== undefined)) {
    throw new UsageError('--awl removes networks: give --network only');
  }
  if (values.awl && network === undefined)
    throw new UsageError('--awl removes a network: give --network CIDR');
  if (network === undefined && sender === undefined && recipient === undefined && triplet === undefined) {
    throw new UsageError('name what to delete: --network, --sender, --recipient or --triplet');
  }
  const loaded = loadOrReport(values.config);
  if (!loaded) return EXIT.CONFIG;
  const settings = settingsOf(loaded);
  let run: (store: Store) => Promise<Removal>;
  if (triplet !== undefined) {
    const keys = usage(() => parseTriplet(triplet, settings));
    run = (store) => deleteTriplets(store, keys);
  } else if (values.awl) {
    const match = usage(() => parseNetwork(network ?? '', settings, true));
    run = (store) => deleteAwl(store, match);
  } else {
    const filter = usage(() =>
      parseFilter(
        {
          ...(network !== undefined ? { network } : {}),
          ...(sender !== undefined ? { sender } : {}),
          ...(recipient !== undefined ? { recipient } : {}),
        },
        settings,
      ),
    );
    run = (store) => deleteGreylist(store, filter);
  }
  return withStore('greylist', loaded, async (store) => {
    const { removed, incomplete } = await run(store);
    process.stdout.write(`${removed} removed\n`);
    if (incomplete) {
      process.stderr.write(
        `postwarden greylist: searched only the first ${MAX_SCAN_LIMIT} entries in the store; more may match (run it again, or narrow it by --network)\n`,
      );
    }
    return EXIT.OK;
  });
}

async function allow(argv: string[]): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string' }, network: { type: 'string' } });
  if (values.network === undefined) throw new UsageError('name the network: --network CIDR');
  const loaded = loadOrReport(values.config);
  if (!loaded) return EXIT.CONFIG;
  const settings = settingsOf(loaded);
  const text = values.network;
  usage(() => checkAllow(text, settings));
  return withStore('greylist', loaded, async (store) => {
    const done = await allowNetwork(store, text, settings);
    process.stdout.write(
      `${done.network} auto-whitelisted (${done.passes} passes) until ${iso(done.expiresAt) ?? 'forever'}\n`,
    );
    return EXIT.OK;
  });
}

export async function greylist(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  switch (action) {
    case 'list':
      return list(rest);
    case 'delete':
      return remove(rest);
    case 'allow':
      return allow(rest);
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(GREYLIST_USAGE);
      return EXIT.OK;
    default: {
      const problem =
        action === undefined ? 'name an action: list, delete or allow' : `unknown action '${action}'`;
      process.stderr.write(`postwarden greylist: ${problem}\n\n${GREYLIST_USAGE}`);
      return EXIT.USAGE;
    }
  }
}
