/**
 * Stable codes of the maps layer: what happened to a table, and what the admin should do. The registry reports
 * events through a callback (it never logs by itself); docs are generated from MAP_EVENT_CODES.
 */

export type MapEventLevel = 'info' | 'warn' | 'error';

export interface MapCodeDoc {
  readonly level: MapEventLevel;
  readonly summary: string;
  readonly fix: string;
}

export const MAP_EVENT_CODES = Object.freeze({
  'PW-M001': {
    level: 'info',
    summary: 'A map was opened and serves its entries.',
    fix: 'Nothing to do.',
  },
  'PW-M002': {
    level: 'info',
    summary: 'A map file changed (or SIGHUP) and its new contents replaced the old ones at once.',
    fix: 'Nothing to do.',
  },
  'PW-M003': {
    level: 'warn',
    summary: 'A map holds the same key twice; the first entry wins and the later one is ignored.',
    fix: 'Remove or merge the duplicate line named in the message.',
  },
  'PW-M010': {
    level: 'error',
    summary: 'A map could not be opened; every lookup in it fails with the reason, so checks using it fail.',
    fix: 'Create the file, make it readable by the postwarden user, or fix the line named; it is retried when the file changes and on SIGHUP.',
  },
  'PW-M011': {
    level: 'warn',
    summary:
      'A map file could not be reloaded; the last good contents keep serving and the map reports unhealthy.',
    fix: 'Fix or restore the file named in the message (replace it atomically: write a temporary file, then mv).',
  },
  'PW-M012': {
    level: 'info',
    summary: 'A map that was failing loaded again and is healthy.',
    fix: 'Nothing to do.',
  },
  'PW-M020': {
    level: 'error',
    summary: 'A map spec in the configuration is not valid (unknown type, missing path, bad inline entry).',
    fix: 'Write type:name with a supported type: inline:{ … }, file:/path, cidr:/path or regexp:/path.',
  },
} satisfies Record<string, MapCodeDoc>);

export type MapEventCode = keyof typeof MAP_EVENT_CODES;

export interface MapEvent {
  readonly code: MapEventCode;
  readonly level: MapEventLevel;
  /** The map's name (its canonical spec). */
  readonly map: string;
  readonly message: string;
}
