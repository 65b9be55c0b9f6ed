/**
 * Address helpers shared by the maps and the checks; nothing mail-policy specific.
 */

/**
 * Strips an address extension the way Postfix's `recipient_delimiter` does: at the first of the delimiter
 * characters, unless the local part starts with one (nothing would remain). `''` turns stripping off.
 */
export function stripExtension(local: string, delimiters: string): string {
  if (delimiters === '') return local;
  for (let i = 1; i < local.length; i++) {
    if (delimiters.includes(local.charAt(i))) return local.slice(0, i);
  }
  return local;
}
