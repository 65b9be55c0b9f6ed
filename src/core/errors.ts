/**
 * Typed failures a check may raise. The pipeline records them with their stable code; they never count as a
 * pass (STYLE.md §6).
 */
export class LookupFailed extends Error {
  readonly code = 'PW-E003';
  constructor(
    readonly table: string,
    readonly reason: string,
  ) {
    super(`lookup in ${table} failed: ${reason}`);
  }
}
