/**
 * What an HTML body shows and hides, read in one streaming pass: the visible text, the text a reader cannot
 * see (display:none, visibility:hidden, zero opacity, a font of a pixel or less, text pushed off screen, text
 * the colour of its background), the images (remote or linked, tracking pixels left out), the links with
 * their text, forms and password fields, and the URLs of links, images and forms.
 *
 * Why htmlparser2 (fb55/htmlparser2, already installed: mailparser → html-to-text → htmlparser2): it is pure
 * (no I/O), maintained, tolerant of broken markup the way mail needs, and its Parser is a streaming tokenizer
 * that builds no DOM, so memory stays flat and pathological nesting costs linear time. html-to-text itself is
 * not used: it renders a whole DOM to text and drops exactly what these rules need (styles, hidden elements,
 * image and link attributes). Entities are decoded by the parser (`&#104;ttp` is `http`).
 *
 * Bounds: the caller feeds at most its character budget, and the walk stops between slices of it when the
 * time budget is spent or elements nest deeper than MAX_DEPTH (see there); per element, the style attribute
 * read is cut at MAX_STYLE characters, a link's text at MAX_ANCHOR_TEXT, and links and URLs are kept up to
 * `maxUrls` (more sets `urlsCut`).
 */
import { Parser } from 'htmlparser2';

const MAX_STYLE = 1000;
const MAX_ANCHOR_TEXT = 300;
const MAX_SAMPLE = 60;
/** Input is fed in slices this long; the limits are checked between slices. */
const SLICE = 4096;
/**
 * Open elements at most: past this the walk stops (the rest is unread, and `cut` says so). htmlparser2 keeps
 * its open-element stack with Array#unshift, so nesting costs quadratic time (100 000 nested <div>s: 11 s);
 * real mail nests tables a few dozen deep. One slice can open at most SLICE / 3 more before the check.
 */
export const MAX_DEPTH = 1000;

/** Elements that start a new line when rendered: they separate words, inline elements do not. */
const BLOCK = new Set([
  'address',
  'article',
  'aside',
  'blockquote',
  'br',
  'center',
  'dd',
  'div',
  'dl',
  'dt',
  'footer',
  'form',
  'h1',
  'h2',
  'h3',
  'h4',
  'h5',
  'h6',
  'header',
  'hr',
  'li',
  'ol',
  'p',
  'pre',
  'section',
  'table',
  'td',
  'th',
  'tr',
  'ul',
]);

/** Elements whose text is never shown (and is not "hidden text" either: it is CSS, script, metadata). */
const UNSHOWN = new Set(['head', 'title', 'style', 'script', 'noscript', 'template', 'xml', 'svg']);

type Rgb = readonly [number, number, number];

/** What mail clients paint a link without a colour of its own. */
const LINK_COLOR: Rgb = [0, 0, 238];

const NAMED: Readonly<Record<string, Rgb>> = {
  white: [255, 255, 255],
  black: [0, 0, 0],
  red: [255, 0, 0],
  green: [0, 128, 0],
  blue: [0, 0, 255],
  yellow: [255, 255, 0],
  gray: [128, 128, 128],
  grey: [128, 128, 128],
  silver: [192, 192, 192],
  whitesmoke: [245, 245, 245],
  snow: [255, 250, 250],
  ivory: [255, 255, 240],
  navy: [0, 0, 128],
  orange: [255, 165, 0],
};

/** A CSS or attribute colour; `null` for one we cannot read (a gradient, an image, a variable). */
export function parseColor(text: string): Rgb | null {
  const value = text.trim().toLowerCase();
  let match = /^#?([0-9a-f]{6})$/.exec(value);
  if (match) {
    const n = parseInt(match[1] ?? '0', 16);
    return [n >> 16, (n >> 8) & 255, n & 255];
  }
  match = /^#?([0-9a-f]{3})$/.exec(value);
  if (match) {
    const [r, g, b] = [...(match[1] ?? '000')].map((c) => parseInt(c + c, 16));
    return [r ?? 0, g ?? 0, b ?? 0];
  }
  match = /^rgba?\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*(?:,\s*([\d.]+)\s*)?\)$/.exec(value);
  if (match) {
    if (match[4] !== undefined && Number(match[4]) < 0.5) return null; // mostly transparent: shows what is below
    return [Number(match[1]), Number(match[2]), Number(match[3])];
  }
  return NAMED[value] ?? null;
}

function luminance([r, g, b]: Rgb): number {
  const channel = (c: number) => {
    const s = Math.min(255, c) / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
}

/** WCAG contrast ratio below 1.25: the text is, to a reader, invisible on its background. */
function lowContrast(fg: Rgb, bg: Rgb): boolean {
  const a = luminance(fg);
  const b = luminance(bg);
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05) < 1.25;
}

interface Frame {
  readonly tag: string;
  readonly unshown: boolean;
  /** Why this element's text cannot be seen, if it cannot. */
  readonly hidden: string | undefined;
  /** Text colour; `null` when unknown. */
  readonly color: Rgb | null;
  /** The background behind it; `null` when unknown (an image, a class we did not read). */
  readonly background: Rgb | null;
}

export interface HtmlAnchor {
  readonly href: string;
  readonly text: string;
}

export interface HtmlFacts {
  /** The text a reader sees, block elements as line breaks. */
  visibleText: string;
  /** Letters and digits in the visible text. */
  visibleLetters: number;
  /** Letters and digits a reader cannot see. */
  hiddenLetters: number;
  /** The first hiding technique met, and a short sample of hidden text. */
  hiddenHow: string | undefined;
  hiddenSample: string;
  /** Images a reader sees (not tracking pixels, not hidden): remote (`http…`) or inside a link. */
  images: number;
  remoteOrLinkedImages: number;
  anchors: HtmlAnchor[];
  /** URLs of links, areas, images and forms, in order (up to `maxUrls`). */
  urls: string[];
  urlsCut: boolean;
  forms: number;
  passwordFields: number;
}

const NOT_LETTER = /[^\p{L}\p{N}]+/gu;

/** Letters and digits in `text` (a replace is several times faster than counting matches). */
function countLetters(text: string): number {
  return text.replace(NOT_LETTER, '').length;
}

function styleOf(attribs: Readonly<Record<string, string>>): Map<string, string> {
  const style = new Map<string, string>();
  const text = (attribs.style ?? '').slice(0, MAX_STYLE);
  if (text === '') return style;
  for (const declaration of text.split(';')) {
    const colon = declaration.indexOf(':');
    if (colon < 0) continue;
    const property = declaration.slice(0, colon).trim().toLowerCase();
    const value = declaration
      .slice(colon + 1)
      .replace(/!important/i, '')
      .trim()
      .toLowerCase();
    style.set(property, value);
  }
  return style;
}

/** A length in CSS pixels (px, pt, em, rem, %; a bare number is px); `undefined` if unreadable. */
function pixels(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const match = /^(-?[\d.]+)\s*(px|pt|em|rem|%)?$/.exec(value.trim());
  if (!match) return undefined;
  const n = Number(match[1]);
  if (Number.isNaN(n)) return undefined;
  switch (match[2]) {
    case 'pt':
      return (n * 4) / 3;
    case 'em':
    case 'rem':
      return n * 16;
    case '%':
      return (n * 16) / 100;
    default:
      return n;
  }
}

/** Why an element's own style hides its text, if it does. */
function hidingOf(tag: string, attribs: Readonly<Record<string, string>>, style: Map<string, string>) {
  if (attribs.hidden !== undefined) return 'the hidden attribute';
  if (style.get('display') === 'none') return 'display:none';
  const visibility = style.get('visibility');
  if (visibility === 'hidden' || visibility === 'collapse') return `visibility:${visibility}`;
  if (style.get('mso-hide') === 'all') return 'mso-hide:all';
  const opacity = style.get('opacity');
  if (opacity !== undefined && Number(opacity) < 0.1) return `opacity:${opacity}`;
  const fontSize = pixels(style.get('font-size'));
  if (fontSize !== undefined && fontSize <= 1) return `font-size:${style.get('font-size') ?? ''}`;
  if (tag === 'font' && attribs.size !== undefined && Number(attribs.size) <= 0) return 'font size=0';
  for (const property of ['max-height', 'height', 'max-width', 'width']) {
    const size = pixels(style.get(property));
    if (size !== undefined && size <= 1 && style.get('overflow') === 'hidden')
      return `${property}:${style.get(property) ?? ''} with overflow:hidden`;
  }
  for (const property of ['text-indent', 'left', 'top', 'margin-left', 'margin-top']) {
    const offset = pixels(style.get(property));
    if (offset !== undefined && offset <= -500)
      return `${property}:${style.get(property) ?? ''} (off screen)`;
  }
  return undefined;
}

function backgroundOf(attribs: Readonly<Record<string, string>>, style: Map<string, string>) {
  const css = style.get('background-color') ?? style.get('background');
  if (css !== undefined) {
    if (css.includes('url(') || css.includes('gradient')) return { known: true, color: null };
    const first = /#[0-9a-f]{3,6}\b|rgba?\([^)]*\)|[a-z]+/.exec(css);
    return { known: true, color: first ? parseColor(first[0]) : null };
  }
  if (attribs.background !== undefined) return { known: true, color: null };
  if (attribs.bgcolor !== undefined) return { known: true, color: parseColor(attribs.bgcolor) };
  return { known: false, color: null };
}

function isTiny(attribs: Readonly<Record<string, string>>, style: Map<string, string>): boolean {
  const w = pixels(attribs.width ?? style.get('width'));
  const h = pixels(attribs.height ?? style.get('height'));
  return (w !== undefined && w <= 2) || (h !== undefined && h <= 2);
}

export interface HtmlLimits {
  readonly maxUrls: number;
  /** Checked between slices of input: true stops the walk (the facts so far are returned). */
  readonly stop: () => boolean;
}

/**
 * Walks `html` (already cut to the caller's character budget). `cut` says why the walk stopped early, if it
 * did: the time budget (`stop`) or nesting past MAX_DEPTH.
 */
export function analyseHtml(html: string, limits: HtmlLimits): { facts: HtmlFacts; cut?: string } {
  const facts: HtmlFacts = {
    visibleText: '',
    visibleLetters: 0,
    hiddenLetters: 0,
    hiddenHow: undefined,
    hiddenSample: '',
    images: 0,
    remoteOrLinkedImages: 0,
    anchors: [],
    urls: [],
    urlsCut: false,
    forms: 0,
    passwordFields: 0,
  };
  const visible: string[] = [];
  // Classes in a <style> block may set colours we do not resolve: then the page's colours are unknown, and
  // only text whose colour and background are both set inline is judged for contrast.
  const styleSheets = /<style[^>]*>[^<]*(?:background|color)/i.test(html.slice(0, 200_000));
  const root: Frame = {
    tag: '',
    unshown: false,
    hidden: undefined,
    color: styleSheets ? null : [0, 0, 0],
    background: styleSheets ? null : [255, 255, 255],
  };
  const stack: Frame[] = [root];
  let anchor: { href: string; text: string } | undefined;

  const addUrl = (url: string | undefined) => {
    if (url === undefined || url.trim() === '') return;
    if (facts.urls.length >= limits.maxUrls) facts.urlsCut = true;
    else facts.urls.push(url.trim());
  };
  const closeAnchor = () => {
    if (!anchor) return;
    if (facts.anchors.length >= limits.maxUrls) facts.urlsCut = true;
    else facts.anchors.push({ href: anchor.href, text: anchor.text.trim() });
    anchor = undefined;
  };

  const parser = new Parser(
    {
      onopentag(tag, attribs) {
        const parent = stack[stack.length - 1] ?? root;
        const style = styleOf(attribs);
        const bg = backgroundOf(attribs, style);
        const colorText =
          style.get('color') ?? (tag === 'font' ? attribs.color : tag === 'body' ? attribs.text : undefined);
        const frame: Frame = {
          tag,
          unshown: parent.unshown || UNSHOWN.has(tag),
          hidden: parent.hidden ?? hidingOf(tag, attribs, style),
          color: colorText !== undefined ? parseColor(colorText) : tag === 'a' ? LINK_COLOR : parent.color,
          background: bg.known ? bg.color : parent.background,
        };
        stack.push(frame);
        if (BLOCK.has(tag)) visible.push('\n');
        switch (tag) {
          case 'a':
            closeAnchor();
            if (attribs.href !== undefined) {
              anchor = { href: attribs.href.slice(0, 2000), text: '' };
              addUrl(attribs.href);
            }
            break;
          case 'area':
            addUrl(attribs.href);
            break;
          case 'img':
            addUrl(attribs.src);
            if (frame.hidden === undefined && !frame.unshown && !isTiny(attribs, style)) {
              facts.images++;
              if (anchor !== undefined || /^\s*https?:/i.test(attribs.src ?? ''))
                facts.remoteOrLinkedImages++;
            }
            break;
          case 'form':
            facts.forms++;
            addUrl(attribs.action);
            break;
          case 'input':
            if ((attribs.type ?? '').toLowerCase() === 'password') facts.passwordFields++;
            break;
        }
      },
      onclosetag(tag) {
        if (stack.length > 1) stack.pop();
        if (tag === 'a') closeAnchor();
        if (BLOCK.has(tag)) visible.push('\n');
      },
      ontext(text) {
        const frame = stack[stack.length - 1] ?? root;
        if (frame.unshown) return;
        const why =
          frame.hidden ??
          (frame.color !== null && frame.background !== null && lowContrast(frame.color, frame.background)
            ? 'text the colour of its background'
            : undefined);
        if (why !== undefined) {
          const letters = countLetters(text);
          if (letters === 0) return;
          facts.hiddenLetters += letters;
          facts.hiddenHow ??= why;
          if (facts.hiddenSample.length < MAX_SAMPLE)
            facts.hiddenSample = `${facts.hiddenSample} ${text.replace(/\s+/g, ' ').trim()}`
              .trim()
              .slice(0, MAX_SAMPLE);
          return;
        }
        visible.push(text);
        facts.visibleLetters += countLetters(text);
        if (anchor && anchor.text.length < MAX_ANCHOR_TEXT)
          anchor.text = (anchor.text + text).slice(0, MAX_ANCHOR_TEXT);
      },
    },
    { decodeEntities: true, lowerCaseTags: true, lowerCaseAttributeNames: true },
  );

  let cut: string | undefined;
  for (let at = 0; at < html.length; at += SLICE) {
    if (at > 0 && limits.stop()) cut = 'time budget spent inside the HTML';
    else if (stack.length > MAX_DEPTH) cut = `HTML nested deeper than ${MAX_DEPTH} elements`;
    if (cut !== undefined) break;
    parser.write(html.slice(at, at + SLICE));
  }
  parser.end();
  closeAnchor();
  facts.visibleText = visible.join('').replace(/[ \t\r\f\v\u00a0]+/g, ' ');
  return cut === undefined ? { facts } : { facts, cut };
}
