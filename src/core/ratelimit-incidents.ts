/**
 * Rate-limit incidents: what the admin sees when a SASL user went over a limit and its mail is being held.
 *
 *   rlinc:<user>               the open incident (JSON): when, which limit, from where; its notice's fate
 *   rlheld:<user>|<queue id>   one held message (JSON): when, sender, recipients — the API releases these
 *
 * Both expire after `incident_ttl_s`. An incident is opened with compareAndSet on an absent key, so of several
 * instances (or messages) racing, exactly one opens it and that one alone sends the admin notice ("once per
 * incident"). Held messages are one key each (no read-modify-write of a growing list), found again by prefix
 * scan, at most MAX_SCAN_LIMIT per user. The check (checks/ratelimit.ts) writes these; the admin API reads them,
 * resets users and forgets what it released.
 *
 * Failure behaviour: store errors propagate (StoreUnavailable); an unreadable stored record is skipped.
 */
import type { PolicyRequest } from './request.js';
import { MAX_SCAN_LIMIT, type Store } from './store.js';

export interface Incident {
  /** The SASL user, normalised (lower case). */
  readonly user: string;
  /** ms since the epoch. */
  readonly openedAt: number;
  /** The limit it went over, as its config key and rate: `per_sasl_user 200/1h`. */
  readonly limit: string;
  readonly client: string;
  readonly sender: string;
  /** The message that opened it. */
  readonly queueId: string;
}

export type NoticeState = 'pending' | 'sent' | 'failed' | 'off';

export interface IncidentRecord extends Incident {
  /** What became of the admin notice. */
  readonly notice: NoticeState;
}

export interface HeldMessage {
  readonly user: string;
  readonly queueId: string;
  readonly at: number;
  readonly sender: string;
  readonly recipients: number;
}

/** Where the check reports a new incident (the admin notice); must not block or throw. */
export interface RateLimitAlerts {
  incidentOpened(incident: Incident): void;
}

export const NO_ALERTS: RateLimitAlerts = { incidentOpened: () => undefined };

export const INCIDENT_PREFIX = 'rlinc:';
export const HELD_PREFIX = 'rlheld:';

// A SASL user may hold `|` (and so `%`): escaped, a held key splits back at its last `|`.
const escapeUser = (user: string): string => user.replace(/[%|]/g, (c) => (c === '%' ? '%25' : '%7C'));
const unescapeUser = (text: string): string =>
  text.replace(/%(25|7C)/g, (_m, code: string) => (code === '25' ? '%' : '|'));

export const incidentKey = (user: string): string => `${INCIDENT_PREFIX}${escapeUser(user)}`;
const heldPrefix = (user: string): string => `${HELD_PREFIX}${escapeUser(user)}|`;
const heldKey = (user: string, queueId: string): string => `${heldPrefix(user)}${queueId}`;

function parseJson(value: string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(value);
    return parsed !== null && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const text = (v: unknown): string => (typeof v === 'string' ? v : '');
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

function toRecord(value: string): IncidentRecord | undefined {
  const o = parseJson(value);
  if (!o || typeof o['user'] !== 'string') return undefined;
  const notice = text(o['notice']);
  return {
    user: o['user'],
    openedAt: num(o['openedAt']),
    limit: text(o['limit']),
    client: text(o['client']),
    sender: text(o['sender']),
    queueId: text(o['queueId']),
    notice: notice === 'sent' || notice === 'failed' || notice === 'off' ? notice : 'pending',
  };
}

/** Opens the user's incident unless one is open; true when this call opened it (and must notify). */
export function openIncident(store: Store, incident: Incident, ttlS: number): Promise<boolean> {
  const record: IncidentRecord = { ...incident, notice: 'pending' };
  return store.compareAndSet(incidentKey(incident.user), undefined, JSON.stringify(record), ttlS);
}

export async function getIncident(store: Store, user: string): Promise<IncidentRecord | undefined> {
  const value = await store.get(incidentKey(user));
  return value === undefined ? undefined : toRecord(value);
}

/** Records what became of the notice of the incident opened at `openedAt` (not of a later one); keeps its expiry. */
export async function markNotice(store: Store, incident: Incident, notice: NoticeState): Promise<void> {
  const key = incidentKey(incident.user);
  const entry = await store.getEntry(key);
  const current = entry && toRecord(entry.value);
  if (!entry || !current || current.openedAt !== incident.openedAt) return;
  const ttlS = entry.expiresAt === undefined ? undefined : Math.max(1, (entry.expiresAt - Date.now()) / 1000);
  await store.compareAndSet(key, entry.value, JSON.stringify({ ...current, notice }), ttlS);
}

/** Remembers a held message (by its queue id, which Postfix sends at END-OF-MESSAGE). */
export async function recordHeld(
  store: Store,
  user: string,
  request: PolicyRequest,
  at: number,
  ttlS: number,
): Promise<void> {
  if (request.queueId === '') return;
  const held = { at, sender: request.sender, recipients: request.recipientCount };
  await store.set(heldKey(user, request.queueId), JSON.stringify(held), ttlS);
}

/** The held messages recorded for a user (at most MAX_SCAN_LIMIT). */
export async function heldMessages(store: Store, user: string): Promise<HeldMessage[]> {
  const prefix = heldPrefix(user);
  const entries = await store.scan(prefix, MAX_SCAN_LIMIT);
  return entries.flatMap((e) => {
    const o = parseJson(e.value);
    if (!o) return [];
    return [
      {
        user,
        queueId: e.key.slice(prefix.length),
        at: num(o['at']),
        sender: text(o['sender']),
        recipients: num(o['recipients']),
      },
    ];
  });
}

export interface UserSummary {
  readonly user: string;
  readonly incident?: IncidentRecord;
  /** Held messages recorded (at most MAX_SCAN_LIMIT are counted). */
  readonly held: number;
}

/** Users with an open incident or recorded held mail, by user name: at most `limit` incidents, and held
 * messages counted up to MAX_SCAN_LIMIT in all. */
export async function listUsers(store: Store, limit: number): Promise<UserSummary[]> {
  const users = new Map<string, { incident?: IncidentRecord; held: number }>();
  for (const entry of await store.scan(INCIDENT_PREFIX, limit)) {
    const record = toRecord(entry.value);
    if (record) users.set(record.user, { incident: record, held: 0 });
  }
  for (const entry of await store.scan(HELD_PREFIX, MAX_SCAN_LIMIT)) {
    const rest = entry.key.slice(HELD_PREFIX.length);
    const bar = rest.lastIndexOf('|');
    if (bar < 0) continue;
    const user = unescapeUser(rest.slice(0, bar));
    const summary = users.get(user) ?? { held: 0 };
    summary.held += 1;
    users.set(user, summary);
  }
  return [...users.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([user, s]) => ({ user, held: s.held, ...(s.incident ? { incident: s.incident } : {}) }));
}

/** How many incidents are open and how many held messages are recorded, each counted up to MAX_SCAN_LIMIT. */
export async function countOpen(store: Store): Promise<{ incidents: number; held: number }> {
  const [incidents, held] = await Promise.all([
    store.scan(INCIDENT_PREFIX, MAX_SCAN_LIMIT),
    store.scan(HELD_PREFIX, MAX_SCAN_LIMIT),
  ]);
  return { incidents: incidents.length, held: held.length };
}

/** Closes the user's incident and empties the given buckets; true when there was an incident. */
export async function closeIncident(
  store: Store,
  user: string,
  buckets: readonly string[],
): Promise<boolean> {
  const had = await store.delete(incidentKey(user));
  for (const key of buckets) await store.delete(key);
  return had;
}

/** Forgets held messages the admin released or deleted. */
export async function forgetHeld(store: Store, user: string, queueIds: readonly string[]): Promise<void> {
  for (const id of queueIds) await store.delete(heldKey(user, id));
}
