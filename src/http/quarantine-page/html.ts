/**
 * HTML for the quarantine page, rendered on the server: an `html` template tag that escapes every value put into
 * it (subjects, addresses, header text and reasons come from strangers' mail), the page layout, and the one
 * style sheet (served from a file route, so the content-security policy needs no inline style).
 *
 * Hand-written rather than a template engine: the pages are a handful of tables and forms, and one tag that
 * escapes by default (markup only through `Html` values the tag made) is the whole of what is needed.
 */

/** Markup made by `html`: inserted as is. Anything else put into the tag is escaped. */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/**
 * Text fit for an element or a double-quoted attribute. C0 controls (other than tab and newline) and DEL
 * become U+FFFD, so no byte of a header confuses the parser or the terminal of someone viewing the source.
 */
export function escapeHtml(text: string): string {
  const escaped = text.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
  // eslint-disable-next-line no-control-regex -- control characters are what this replaces
  return escaped.replace(/[\0-\x08\x0b-\x1f\x7f]/g, '\uFFFD');
}

function piece(value: unknown): string {
  if (value instanceof Html) return value.value;
  if (Array.isArray(value)) return value.map(piece).join('');
  if (value === undefined || value === null || value === false) return '';
  return escapeHtml(String(value));
}

/** A template tag: literal parts as written, every value escaped unless it is `Html` (arrays: each item). */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0] ?? '';
  values.forEach((value, i) => {
    out += piece(value) + (strings[i + 1] ?? '');
  });
  return new Html(out);
}

export const STYLE_SHEET = `body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#f6f6f4}
main{max-width:72rem;margin:0 auto;padding:1.5rem}
h1{font-size:1.4rem;margin:0 0 1rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #ddd;vertical-align:top;overflow-wrap:break-word}
.nowrap{white-space:nowrap}
th{background:#eceae4;font-weight:600}
pre{background:#fff;border:1px solid #ddd;padding:.75rem;overflow:auto;max-height:32rem;white-space:pre-wrap;overflow-wrap:anywhere}
form.inline{display:inline}
button{font:inherit;padding:.35rem .9rem;border:1px solid #888;border-radius:4px;background:#fff;cursor:pointer}
button.danger{border-color:#a33;color:#a33}
button.primary{background:#24613a;border-color:#24613a;color:#fff}
input[type=password]{font:inherit;padding:.35rem;width:24rem;max-width:100%}
.note{padding:.6rem .9rem;border-left:4px solid #24613a;background:#fff;margin:0 0 1rem}
.problem{padding:.6rem .9rem;border-left:4px solid #a33;background:#fff;margin:0 0 1rem}
.muted{color:#666}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;background:#fff;padding:.75rem;border:1px solid #ddd}
dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}
nav{display:flex;gap:1rem;align-items:center;justify-content:space-between;margin-bottom:1rem}
`;

/** A whole page: `base` is the public path prefix ('' or '/something') for the style sheet. */
export function page(base: string, title: string, body: Html): string {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="robots" content="noindex, nofollow" />
        <title>${title}</title>
        <link rel="stylesheet" href="${base}/quarantine/style.css" />
      </head>
      <body>
        <main>${body}</main>
      </body>
    </html> `.value;
}

/** "3 h", "2 d": how long ago, coarse. */
export function age(fromMs: number, nowMs: number): string {
  const s = Math.max(0, Math.round((nowMs - fromMs) / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} d`;
}

/** 1234 → "1.2 kB". */
export function size(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < 1_000_000) return `${(bytes / 1000).toFixed(1)} kB`;
  return `${(bytes / 1_000_000).toFixed(1)} MB`;
}
