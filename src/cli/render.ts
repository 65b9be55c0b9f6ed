/**
 * How the admin commands print rows: one JSON object per line (`--json`), or an aligned table whose headers are
 * the field names (`first_seen` → FIRST SEEN). Shared by `greylist` and `quarantine`.
 */

/** Columns padded to the widest cell; the last column is not padded. */
function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [header, ...rows].map((cells) => `${line(cells)}\n`).join('');
}

export type Row = Record<string, string | number | boolean | null | undefined>;

/** One JSON line per row, or an aligned table whose headers are the field names (`first_seen` → FIRST SEEN). */
export function print(rows: readonly Row[], json: boolean, empty: string): void {
  if (json) {
    for (const row of rows) process.stdout.write(`${JSON.stringify(row)}\n`);
    return;
  }
  const first = rows[0];
  if (!first) {
    process.stdout.write(`${empty}\n`);
    return;
  }
  const fields = Object.keys(first);
  const cell = (value: Row[string], field: string): string => {
    if (value === undefined || value === null) return field === 'expires' ? 'never' : '-';
    if (typeof value === 'boolean') return value ? 'yes' : 'no';
    return String(value);
  };
  const header = fields.map((f) => f.replace(/_/g, ' ').toUpperCase());
  process.stdout.write(
    table(
      header,
      rows.map((row) => fields.map((f) => cell(row[f], f))),
    ),
  );
}
