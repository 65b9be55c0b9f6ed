/** Exit codes (sysexits.h), as DESIGN.md §3 promises admins' scripts. */
export const EXIT = {
  OK: 0,
  USAGE: 64,
  DATAERR: 65,
  UNAVAILABLE: 69,
  CANTCREAT: 73,
  TEMPFAIL: 75,
  CONFIG: 78,
} as const;
