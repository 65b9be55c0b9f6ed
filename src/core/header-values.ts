/**
 * Values written into header fields we add (Received-SPF, Authentication-Results): many come from the sender
 * (addresses, DKIM domains and selectors), so each is made a single safe token: a dot-atom as it is, anything else
 * a quoted string (RFC 7208 §9.1, RFC 8601 §2.2), control characters (CR and LF above all) gone.
 */

// eslint-disable-next-line no-control-regex -- control characters are exactly what is removed
const CONTROL = /[\x00-\x1f\x7f]+/g;

const ATEXT = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$/;
const isDotAtom = (text: string): boolean => ATEXT.test(text) && !/^\.|\.\.|\.$/.test(text);
const quoted = (text: string): string => `"${text.replace(/[\\"]/g, (c) => `\\${c}`)}"`;

/** A value of a key-value pair (Received-SPF). */
export function headerValue(value: string): string {
  const clean = value.replace(CONTROL, ' ');
  return isDotAtom(clean) ? clean : quoted(clean);
}

/** A property value of Authentication-Results (RFC 8601 pvalue), which may also be `local-part@domain`. */
export function propertyValue(value: string): string {
  const clean = value.replace(CONTROL, ' ');
  const at = clean.lastIndexOf('@');
  const plain = at < 0 ? isDotAtom(clean) : isDotAtom(clean.slice(0, at)) && isDotAtom(clean.slice(at + 1));
  return plain ? clean : quoted(clean);
}

/** Free text as a comment's content, bounded: no parentheses or backslashes to escape, whitespace collapsed. */
export function headerComment(text: string, max: number): string {
  const flat = text
    .replace(/[()\\]/g, ' ')
    .replace(CONTROL, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return flat.length > max ? `${flat.slice(0, max - 3)}...` : flat;
}
