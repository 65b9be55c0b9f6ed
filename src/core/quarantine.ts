/**
 * What the HTTP schemas and the CLI share with the quarantine without loading it (src/filter/quarantine.ts pulls
 * in the SMTP client): the form of a quarantine id and of a listing's cursor, and the bound of a release.
 */

/** The day held (`YYYYMMDD`), a dash, 16 hex digits, as Quarantine.newId makes them; anything else names none. */
export const QUARANTINE_ID_PATTERN = '^[0-9]{8}-[0-9a-f]{16}$';
export const QUARANTINE_ID = new RegExp(QUARANTINE_ID_PATTERN);

/** A listing's cursor: `<ms since the epoch>.<quarantine id>` of the last entry of the page before. */
export const QUARANTINE_CURSOR_PATTERN = '^[0-9]{1,15}[.][0-9]{8}-[0-9a-f]{16}$';
export const QUARANTINE_CURSOR = new RegExp(QUARANTINE_CURSOR_PATTERN);

/** The most recipients a release may be redirected to. */
export const MAX_RELEASE_RECIPIENTS = 100;
