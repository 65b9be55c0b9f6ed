/**
 * banned — attachments that run on a double click, by name, by declared type, by what the bytes are, and inside
 * zip archives (amavis's banned files, README.banned). Pure: archives are read through the ArchiveLister port
 * (src/adapters/archive.ts), which never writes to disk and never inflates more than the limits below allow.
 *
 *   a name with a banned extension (case, double extension, trailing dots and spaces, direction
 *   controls and invisible characters, full-width letters: all normalised away before matching)     BANNED_EXTENSION
 *   a declared type that says executable (application/x-msdownload, …), or content sniffed as an
 *   executable (Windows PE, ELF, Mach-O) whatever its name says                                       BANNED_TYPE
 *   a banned name (or sniffed executable) inside a zip, nested up to `archives.max_depth`             BANNED_IN_ARCHIVE
 *   an archive beyond the limits: too deep, too many entries, too many bytes declared, a zip bomb's
 *   compression ratio, or one the parser did not keep whole (filter.parse.keep_bytes)                 ARCHIVE_LIMITS
 *   an archive that cannot be read (corrupt, not a zip, ambiguous: another archive in front)          ARCHIVE_UNREADABLE
 *   an archive with encrypted entries (names are still checked; contents cannot be)                   ENCRYPTED_ARCHIVE
 *
 * Each symbol fires at most once per message; its reason names the parts and file names (never content), the
 * first few of them. Banned files are quarantined by default (notice to the recipients, who may release them);
 * what could not be inspected (limits, unreadable) is held too, as amavis's "unchecked": an attacker chooses
 * whether his archive is readable, so an unread archive is not a clean one. Encrypted archives are only scored
 * by default: they are common in legitimate mail, and their names are still checked.
 *
 * Limits are per message: `max_entries` entries listed and `max_total_bytes` declared in all archives
 * together; the lister inflates only nested archives, each within what is left of `max_total_bytes` and only
 * when its declared ratio is plausible, so a zip bomb costs bounded time and memory. The lister reports trouble
 * as problems, never as a throw; a throwing lister fails the scan (fail-closed: the stage's `on_failure`).
 *
 * Not inspected: other archive formats (rar, 7z, tar, gz, cab: add their extensions to `extensions` to ban
 * them whole), zip-based documents (docx, xlsx, odt…: their names explain the zip, and Office does not run
 * what is inside), and entries inside archives that are not named as archives (they are listed, not read).
 */
import { z } from 'zod';
import type { ContentScanner, MessageFacts, MessagePart, ScanContext, ScanVerdict } from '../content.js';
import { modeSchema, scoreSchema } from '../schema.js';

// ---------------------------------------------------------------------------------------------------------
// The port

/** What the lister knows of an entry from the central directory, before reading any of its data. */
export interface ArchiveEntryInfo {
  /** The entry's path inside the archive, as stored (decoded; `/` separated; directories end with `/`). */
  readonly name: string;
  /** Uncompressed size, as the archive declares it. */
  readonly size: number;
  readonly compressedSize: number;
  /** The entry's data is encrypted (its name is not). */
  readonly encrypted: boolean;
}

export interface ArchiveEntry extends ArchiveEntryInfo {
  /** The entry's data, for entries `wants` asked for and the lister could read within the limits. */
  readonly content?: Uint8Array;
}

export interface ArchiveLimits {
  /** List at most this many entries; the listing says `truncated` when the archive has more. */
  readonly maxEntries: number;
  /** Inflate at most this many bytes in all for the contents asked for (actual bytes, not declared ones). */
  readonly maxBytes: number;
  /** Whether to return an entry's data (nested archives); called once per entry, after listing. */
  readonly wants: (entry: ArchiveEntryInfo) => boolean;
}

/**
 * Why (part of) an archive was not read: `limits` (a budget or a size that lied), `unreadable` (corrupt, not
 * this format, ambiguous), `encrypted` (data or directory encrypted).
 */
export interface ArchiveProblem {
  readonly kind: 'limits' | 'unreadable' | 'encrypted';
  /** The entry concerned, when it is one entry's trouble. */
  readonly entry?: string;
  /** Fit for a log line: no content. */
  readonly reason: string;
}

export interface ArchiveListing {
  /** The entries listed, in directory order (at most `maxEntries`). */
  readonly entries: readonly ArchiveEntry[];
  /** True when the archive has entries beyond `maxEntries`, which were not listed. */
  readonly truncated: boolean;
  readonly problems: readonly ArchiveProblem[];
}

/**
 * The archive port (src/adapters/archive.ts: zip). It never throws for a bad archive: whatever it could not
 * read is a problem in the listing, next to the entries it could.
 */
export interface ArchiveLister {
  list(content: Uint8Array, limits: ArchiveLimits): Promise<ArchiveListing>;
}

// ---------------------------------------------------------------------------------------------------------
// Settings

/**
 * Windows runs these on a double click: programs and screen savers, command and script-host files, HTML
 * applications, installers and patches, control-panel items, Java archives, PowerShell, shortcuts (lnk, url,
 * scf), registry files, compiled help, ClickOnce, Excel add-ins (xll), and disk images (iso, img, vhd, vhdx)
 * that mount on a double click and hide what they carry from Mark-of-the-Web. Drawn from Outlook's and OWA's
 * blocked attachments, narrowed to what runs on a click (not .py, .cer, .mdb…); DLLs are not listed (nothing
 * runs them by a click), but their content sniffs as PE.
 */
// prettier-ignore
export const DEFAULT_BANNED_EXTENSIONS: readonly string[] = [
  'exe', 'scr', 'pif', 'com', 'bat', 'cmd', 'js', 'vbs',
  'jse', 'vbe', 'wsf', 'wsh', 'wsc', 'sct', 'hta',
  'msi', 'msp', 'mst', 'msu', 'cpl', 'jar', 'ps1',
  'lnk', 'url', 'scf', 'reg', 'chm', 'application', 'xll',
  'iso', 'img', 'vhd', 'vhdx',
];

/** Declared content types that say executable (as mail clients and servers label programs). */
export const DEFAULT_BANNED_TYPES: readonly string[] = [
  'application/x-msdownload',
  'application/x-msdos-program',
  'application/x-dosexec',
  'application/x-ms-dos-executable',
  'application/vnd.microsoft.portable-executable',
  'application/x-executable',
  'application/x-mach-binary',
  'application/x-msi',
  'application/x-ms-installer',
  'application/x-ms-shortcut',
  'application/hta',
];

const extensionSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_+-]{0,31}$/, 'an extension without its dot, e.g. exe');

const actionSchema = z.enum(['quarantine', 'tag']);

export const bannedSchema = z
  .strictObject({
    mode: modeSchema.default('enforce'),
    extensions: z
      .array(extensionSchema)
      .max(1000)
      .default([...DEFAULT_BANNED_EXTENSIONS])
      .describe(
        'Banned file name extensions, without the dot, any case; the default is what Windows runs on a double click (programs, scripts, installers, shortcuts, disk images): drawn from Outlook’s blocked attachments',
      ),
    types: z
      .array(
        z
          .string()
          .regex(/^[a-z0-9][a-z0-9!#$&^_.+-]*\/[a-z0-9][a-z0-9!#$&^_.+-]*$/, 'a lower-case type/subtype'),
      )
      .max(1000)
      .default([...DEFAULT_BANNED_TYPES])
      .describe('Declared content types (lower-case, no parameters) that say executable'),
    action: actionSchema
      .default('quarantine')
      .describe(
        'A banned file (name, type or archive entry): quarantine (recipients notified, they may release) or tag (add `tag_score`)',
      ),
    tag_score: scoreSchema.default(5).describe('Score of a banned file when `action` is tag'),
    sniff: z
      .boolean()
      .default(true)
      .describe(
        'Read the content’s magic bytes: executables (PE, ELF, Mach-O) are banned whatever their name, and a zip is looked into whatever its name (zip-based documents aside)',
      ),
    archives: z
      .strictObject({
        extensions: z
          .array(extensionSchema)
          .max(100)
          .default(['zip', 'jar'])
          .describe(
            'Names of zip archives to look into, top level and nested (with `sniff`, zip content too)',
          ),
        max_depth: z
          .number()
          .int()
          .min(1)
          .max(10)
          .default(3)
          .describe(
            'Archives looked into, nested: 1 = the attached archive only; an archive deeper is a limit hit',
          ),
        max_entries: z
          .number()
          .int()
          .min(1)
          .max(100_000)
          .default(1000)
          .describe('Entries listed per message, all archives and levels together; more is a limit hit'),
        max_total_bytes: z
          .number()
          .int()
          .min(1_048_576)
          .max(1_073_741_824)
          .default(52_428_800)
          .describe(
            'Uncompressed bytes the archives of one message may declare, all levels together (more is a limit hit); also bounds what is inflated',
          ),
        max_ratio: z
          .number()
          .min(10)
          .max(10_000)
          .default(100)
          .describe(
            'Uncompressed bytes per compressed byte an entry may declare (a zip bomb’s mark; as Apache POI’s 1:100): a nested archive above it is not opened, and it is a limit hit for a nested archive or an entry of 1 MiB or more',
          ),
        unchecked_action: actionSchema
          .default('quarantine')
          .describe(
            'An archive beyond the limits or unreadable (ARCHIVE_LIMITS, ARCHIVE_UNREADABLE): quarantine (fail-closed: what could not be inspected is not clean) or tag',
          ),
        unchecked_score: scoreSchema.default(5).describe('Their score when `unchecked_action` is tag'),
        encrypted_action: actionSchema
          .default('tag')
          .describe(
            'An archive with encrypted entries (ENCRYPTED_ARCHIVE): tag (common in legitimate mail; the names are still checked) or quarantine',
          ),
        encrypted_score: scoreSchema.default(3).describe('Its score when `encrypted_action` is tag'),
      })
      .prefault({})
      .describe('Looking inside zip archives, with per-message limits that keep a zip bomb cheap'),
  })
  .describe('Banned attachments: executables by name, declared type and content, also inside zip archives');

export type BannedSettings = z.infer<typeof bannedSchema>;

// ---------------------------------------------------------------------------------------------------------
// Names

export interface NormalisedName {
  /** The base name, as Windows would see it: lower-case, NFKC, no controls, no trailing dots or spaces. */
  readonly name: string;
  /** The last extension, without its dot; '' when none. */
  readonly extension: string;
  /** The extension before it (`pdf` in `invoice.pdf.exe`); '' when none. */
  readonly previous: string;
  /** What the raw name did to disguise itself, for the reason. */
  readonly tricks: readonly string[];
}

const INVISIBLE = /[\p{Cf}]/gu;
const CONTROL = /[\p{Cc}]/u;
const TRAILING = /[.\s]+$/u;

function baseName(path: string): string {
  const segments = path.split(/[/\\]/);
  for (let i = segments.length - 1; i >= 0; i -= 1) {
    const segment = segments[i];
    if (segment !== undefined && segment.trim() !== '') return segment;
  }
  return '';
}

function normaliseOne(raw: string, tricks: Set<string>): NormalisedName {
  const folded = raw.normalize('NFKC');
  if (folded !== raw.normalize('NFC')) tricks.add('look-alike characters');
  const visible = folded.replace(INVISIBLE, '');
  if (visible !== folded) tricks.add('direction or invisible characters');
  const lower = baseName(visible).toLowerCase().trimStart();
  const name = lower.replace(TRAILING, '');
  if (name !== lower) tricks.add('trailing dots or spaces');
  const dots = name.split('.').map((s) => s.trim());
  const extension = dots.length > 1 ? (dots[dots.length - 1] ?? '') : '';
  const previous = dots.length > 2 ? (dots[dots.length - 2] ?? '') : '';
  return { name, extension, previous, tricks: [...tricks] };
}

/**
 * A file name's possible readings, each as Windows would see it: the name with controls removed, and each
 * piece between control characters (a tool that stops at a NUL sees `evil.exe` in `evil.exe\0.pdf`).
 */
export function normaliseFileName(raw: string): NormalisedName[] {
  const tricks = new Set<string>();
  if (!CONTROL.test(raw)) return [normaliseOne(raw, tricks)];
  tricks.add('control characters');
  const readings = [raw.replace(/\p{Cc}/gu, ''), ...raw.split(/\p{Cc}+/u)];
  return readings.filter((r) => r !== '').map((r) => normaliseOne(r, tricks));
}

// ---------------------------------------------------------------------------------------------------------
// Magic bytes

export type SniffedType = 'pe' | 'elf' | 'macho' | 'zip';

const SNIFFED_LABEL: Readonly<Record<SniffedType, string>> = {
  pe: 'a Windows executable (PE)',
  elf: 'an ELF executable',
  macho: 'a Mach-O executable',
  zip: 'a zip archive',
};

function startsWith(bytes: Uint8Array, magic: readonly number[], at = 0): boolean {
  if (bytes.length < at + magic.length) return false;
  return magic.every((b, i) => bytes[at + i] === b);
}

function u32le(bytes: Uint8Array, at: number): number {
  return (
    ((bytes[at] ?? 0) | ((bytes[at + 1] ?? 0) << 8) | ((bytes[at + 2] ?? 0) << 16)) +
    (bytes[at + 3] ?? 0) * 2 ** 24
  );
}

function u32be(bytes: Uint8Array, at: number): number {
  return (
    (bytes[at] ?? 0) * 2 ** 24 +
    (((bytes[at + 1] ?? 0) << 16) | ((bytes[at + 2] ?? 0) << 8) | (bytes[at + 3] ?? 0))
  );
}

/**
 * What the bytes are, by their magic: executables a system runs as they are, and zip archives. A Windows
 * executable is `MZ` with a `PE\0\0` header where e_lfanew (at 0x3C) points; `MZ` alone is not enough (text
 * may start so; 16-bit NE and LE programs no current Windows runs). `CA FE BA BE` is a Mach-O universal binary when it counts fewer than
 * 20 architectures, else a Java class file (its version), which no system runs by itself: not an executable.
 */
export function sniffType(bytes: Uint8Array): SniffedType | undefined {
  if (startsWith(bytes, [0x4d, 0x5a]) && bytes.length >= 0x40) {
    const header = u32le(bytes, 0x3c);
    if (header >= 4 && startsWith(bytes, [0x50, 0x45, 0, 0], header)) return 'pe';
  }
  if (startsWith(bytes, [0x7f, 0x45, 0x4c, 0x46])) return 'elf';
  const magic = bytes.length >= 4 ? u32be(bytes, 0) : 0;
  if ([0xfeedface, 0xfeedfacf, 0xcefaedfe, 0xcffaedfe].includes(magic)) return 'macho';
  if (magic === 0xcafebabe && bytes.length >= 8) {
    const count = u32be(bytes, 4);
    if (count > 0 && count < 20) return 'macho';
  }
  if (
    startsWith(bytes, [0x50, 0x4b, 0x03, 0x04]) ||
    startsWith(bytes, [0x50, 0x4b, 0x05, 0x06]) ||
    startsWith(bytes, [0x50, 0x4b, 0x07, 0x08])
  )
    return 'zip';
  return undefined;
}

/** Formats that are zips by definition: their names explain the zip, and their applications run nothing inside. */
// prettier-ignore
const ZIP_DOCUMENTS: ReadonlySet<string> = new Set([
  'docx', 'docm', 'dotx', 'dotm', 'xlsx', 'xlsm', 'xltx', 'xltm', 'xlsb', 'xlam',
  'pptx', 'pptm', 'potx', 'potm', 'ppsx', 'ppsm', 'ppam', 'vsdx', 'vsdm',
  'odt', 'ods', 'odp', 'odg', 'odf', 'ott', 'ots', 'otp', 'epub', 'xps', 'oxps', 'kmz', '3mf',
]);

const ZIP_TYPES: ReadonlySet<string> = new Set([
  'application/zip',
  'application/x-zip',
  'application/x-zip-compressed',
  'application/java-archive',
]);

// ---------------------------------------------------------------------------------------------------------
// Reasons

const MAX_NAME = 100;
const MAX_FINDINGS = 3;
const MAX_REASON = 1000;
/** Entries smaller than this are not held for their ratio: a small file of zeros harms nobody. */
const RATIO_FLOOR_BYTES = 1_048_576;

/** A name fit for a log line and a notice: quoted, controls and direction marks escaped, bounded. */
export function printable(name: string): string {
  const chars = [...name];
  const cut = chars.length > MAX_NAME ? `${chars.slice(0, MAX_NAME).join('')}…` : name;
  const escaped = cut.replace(
    /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}"\\]/gu,
    (c) => `\\u${(c.codePointAt(0) ?? 0).toString(16).padStart(4, '0')}`,
  );
  return `"${escaped}"`;
}

function partLabel(part: MessagePart): string {
  return part.filename === undefined
    ? `part ${part.path} (${part.contentType})`
    : `part ${part.path} ${printable(part.filename)}`;
}

type BannedSymbol =
  | 'BANNED_EXTENSION'
  | 'BANNED_TYPE'
  | 'BANNED_IN_ARCHIVE'
  | 'ARCHIVE_LIMITS'
  | 'ARCHIVE_UNREADABLE'
  | 'ENCRYPTED_ARCHIVE';

/** The symbols, in the order their verdicts are listed. */
export const BANNED_SYMBOLS: readonly BannedSymbol[] = [
  'BANNED_EXTENSION',
  'BANNED_TYPE',
  'BANNED_IN_ARCHIVE',
  'ARCHIVE_LIMITS',
  'ARCHIVE_UNREADABLE',
  'ENCRYPTED_ARCHIVE',
];

const PROBLEM_SYMBOL: Readonly<Record<ArchiveProblem['kind'], BannedSymbol>> = {
  limits: 'ARCHIVE_LIMITS',
  unreadable: 'ARCHIVE_UNREADABLE',
  encrypted: 'ENCRYPTED_ARCHIVE',
};

function formatBytes(n: number): string {
  return n >= 1_048_576 ? `${(n / 1_048_576).toFixed(1)} MiB` : `${n} bytes`;
}

// ---------------------------------------------------------------------------------------------------------
// The scanner

interface Rules {
  readonly extensions: ReadonlySet<string>;
  readonly types: ReadonlySet<string>;
  readonly archiveExtensions: ReadonlySet<string>;
}

interface NameVerdict {
  /** Why the name is banned; undefined when it is not. */
  readonly banned?: string;
  /** Some reading of the name has an archive extension. */
  readonly archive: boolean;
  /** The extension of the main reading (controls removed). */
  readonly extension: string;
}

function judgeName(raw: string, rules: Rules): NameVerdict {
  const readings = normaliseFileName(raw);
  const archive = readings.some((r) => rules.archiveExtensions.has(r.extension));
  const extension = readings[0]?.extension ?? '';
  for (const r of readings) {
    if (!rules.extensions.has(r.extension)) continue;
    const notes: string[] = [];
    if (r.previous !== '') notes.push(`double extension .${r.previous}.${r.extension}`);
    if (r.tricks.length > 0) notes.push(`disguised with ${r.tricks.join(', ')}`);
    return {
      banned: `banned extension .${r.extension}${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`,
      archive,
      extension,
    };
  }
  return { archive, extension };
}

/** One scan's findings and budgets: the limits are per message. */
class Scan {
  readonly findings = new Map<BannedSymbol, string[]>();
  entries = 0;
  declaredBytes = 0;
  inflatedBytes = 0;
  private bytesReported = false;
  private entriesReported = false;

  constructor(
    private readonly settings: BannedSettings,
    private readonly rules: Rules,
    private readonly lister: ArchiveLister,
    private readonly signal: AbortSignal,
  ) {}

  add(symbol: BannedSymbol, text: string): void {
    const list = this.findings.get(symbol) ?? [];
    list.push(text);
    this.findings.set(symbol, list);
  }

  async part(part: MessagePart): Promise<void> {
    const name = part.filename === undefined ? undefined : judgeName(part.filename, this.rules);
    const where = partLabel(part);
    if (name?.banned !== undefined) this.add('BANNED_EXTENSION', `${where}: ${name.banned}`);
    if (this.rules.types.has(part.contentType))
      this.add('BANNED_TYPE', `${where}: declared ${part.contentType}`);
    const sniffed = this.settings.sniff && part.content !== undefined ? sniffType(part.content) : undefined;
    if (sniffed !== undefined && sniffed !== 'zip')
      this.add('BANNED_TYPE', `${where}: content is ${SNIFFED_LABEL[sniffed]}`);

    const namedArchive = name?.archive === true || ZIP_TYPES.has(part.contentType);
    const sniffedArchive = sniffed === 'zip' && !ZIP_DOCUMENTS.has(name?.extension ?? '');
    if (!namedArchive && !sniffedArchive) return;
    // The parser keeps a prefix (filter.parse.keep_bytes); a zip's directory is at its end.
    const kept = part.content?.length ?? 0;
    if (part.content === undefined || kept < part.size) {
      this.add(
        'ARCHIVE_LIMITS',
        `${where}: ${formatBytes(kept)} of ${formatBytes(part.size)} kept for inspection (filter.parse.keep_bytes)`,
      );
      return;
    }
    await this.archive(part.content, 1, where);
  }

  private async archive(content: Uint8Array, depth: number, where: string): Promise<void> {
    this.signal.throwIfAborted();
    const {
      max_depth: maxDepth,
      max_entries: maxEntries,
      max_total_bytes: maxBytes,
    } = this.settings.archives;
    const maxRatio = this.settings.archives.max_ratio;
    if (this.entries >= maxEntries) {
      this.entriesLimit(where);
      return;
    }
    const nested = (entry: ArchiveEntryInfo): boolean =>
      !entry.name.endsWith('/') && judgeName(entry.name, this.rules).archive;
    const tooDense = (entry: ArchiveEntryInfo): boolean =>
      entry.size > maxRatio * Math.max(entry.compressedSize, 1);
    const listing = await this.lister.list(content, {
      maxEntries: maxEntries - this.entries,
      maxBytes: Math.max(0, maxBytes - this.inflatedBytes),
      wants: (entry) => depth < maxDepth && !entry.encrypted && nested(entry) && !tooDense(entry),
    });
    this.entries += listing.entries.length;
    if (listing.truncated) this.entriesLimit(where);

    // First what the directory says (names, sizes, ratios), then what the nested archives hold.
    const encrypted: string[] = [];
    const open: [ArchiveEntry, string][] = [];
    for (const entry of listing.entries) {
      if (entry.name.endsWith('/')) continue;
      const inside = `${where} → ${printable(entry.name)}`;
      const verdict = judgeName(entry.name, this.rules);
      if (verdict.banned !== undefined) this.add('BANNED_IN_ARCHIVE', `${inside}: ${verdict.banned}`);
      if (entry.encrypted) encrypted.push(entry.name);
      this.declaredBytes += entry.size;
      if (tooDense(entry) && (verdict.archive || entry.size >= RATIO_FLOOR_BYTES)) {
        const ratio = Math.round(entry.size / Math.max(entry.compressedSize, 1));
        this.add(
          'ARCHIVE_LIMITS',
          `${inside}: compression ratio ${ratio}:1 over ${maxRatio}:1 (a zip bomb?)`,
        );
      }
      if (verdict.archive && depth >= maxDepth && !entry.encrypted) {
        this.add('ARCHIVE_LIMITS', `${inside}: an archive nested deeper than ${maxDepth}`);
      }
      if (entry.content === undefined) continue;
      this.inflatedBytes += entry.content.length;
      const sniffed = this.settings.sniff ? sniffType(entry.content) : undefined;
      if (sniffed !== undefined && sniffed !== 'zip') {
        this.add('BANNED_IN_ARCHIVE', `${inside}: content is ${SNIFFED_LABEL[sniffed]}`);
      }
      // A nested "archive" that sniffs as an executable is banned as that; opening it would only add noise.
      if (verdict.archive && (sniffed === undefined || sniffed === 'zip')) open.push([entry, inside]);
    }
    if (encrypted.length > 0) {
      const first = encrypted[0] ?? '';
      const more = encrypted.length > 1 ? ` and ${encrypted.length - 1} more` : '';
      this.add('ENCRYPTED_ARCHIVE', `${where}: encrypted ${printable(first)}${more}, not inspected`);
    }
    for (const problem of listing.problems) {
      const at = problem.entry === undefined ? where : `${where} → ${printable(problem.entry)}`;
      this.add(PROBLEM_SYMBOL[problem.kind], `${at}: ${problem.reason}`);
    }
    if (this.declaredBytes > maxBytes && !this.bytesReported) {
      this.bytesReported = true;
      this.add(
        'ARCHIVE_LIMITS',
        `${where}: archives declare ${formatBytes(this.declaredBytes)} uncompressed, over ${formatBytes(maxBytes)}`,
      );
    }
    for (const [entry, inside] of open) {
      if (entry.content !== undefined) await this.archive(entry.content, depth + 1, inside);
    }
  }

  private entriesLimit(where: string): void {
    if (this.entriesReported) return;
    this.entriesReported = true;
    this.add('ARCHIVE_LIMITS', `${where}: more than ${this.settings.archives.max_entries} archive entries`);
  }

  verdicts(): ScanVerdict[] {
    const out: ScanVerdict[] = [];
    for (const symbol of BANNED_SYMBOLS) {
      const texts = this.findings.get(symbol);
      if (texts === undefined || texts.length === 0) continue;
      const shown = texts.slice(0, MAX_FINDINGS).join('; ');
      const more = texts.length > MAX_FINDINGS ? `; and ${texts.length - MAX_FINDINGS} more` : '';
      let reason = `${shown}${more}`;
      if (reason.length > MAX_REASON) reason = `${reason.slice(0, MAX_REASON - 1)}…`;
      out.push(this.verdict(symbol, reason));
    }
    return out;
  }

  private verdict(symbol: BannedSymbol, reason: string): ScanVerdict {
    const { archives } = this.settings;
    const [action, score] =
      symbol === 'ENCRYPTED_ARCHIVE'
        ? [archives.encrypted_action, archives.encrypted_score]
        : symbol === 'ARCHIVE_LIMITS' || symbol === 'ARCHIVE_UNREADABLE'
          ? [archives.unchecked_action, archives.unchecked_score]
          : [this.settings.action, this.settings.tag_score];
    if (action === 'tag') return { scanner: 'banned', symbol, score, reason };
    return {
      scanner: 'banned',
      symbol,
      score: 0,
      action: 'quarantine',
      reason,
      notify: 'recipients',
      releasableBy: 'recipient',
    };
  }
}

function lowerSet(values: readonly string[]): ReadonlySet<string> {
  return new Set(values.map((v) => v.toLowerCase()));
}

function rulesOf(settings: BannedSettings): Rules {
  return {
    extensions: lowerSet(settings.extensions),
    types: lowerSet(settings.types),
    archiveExtensions: lowerSet(settings.archives.extensions),
  };
}

/** What the parser knows of an attachment when its body starts: its name, declared type and first bytes. */
export interface PartHead {
  readonly filename?: string;
  readonly contentType: string;
  /** The first decoded bytes (a dozen are enough). */
  readonly head: Uint8Array;
}

/**
 * Whether the scanner needs a part's whole content: an archive it looks into (by name, declared type or zip
 * magic, as `part` decides) or a Windows program (`MZ`: its PE header may sit anywhere). For every other part
 * the first bytes tell what `sniffType` needs, so the parser need not decode the rest (src/filter/parse.ts).
 */
export function needsWholePart(settings: BannedSettings): (part: PartHead) => boolean {
  const rules = rulesOf(settings);
  return ({ filename, contentType, head }) => {
    const name = filename === undefined ? undefined : judgeName(filename, rules);
    if (name?.archive === true || ZIP_TYPES.has(contentType.toLowerCase())) return true;
    if (startsWith(head, [0x4d, 0x5a])) return true;
    return sniffType(head) === 'zip' && !ZIP_DOCUMENTS.has(name?.extension ?? '');
  };
}

export function createBannedScanner(settings: BannedSettings, archives: ArchiveLister): ContentScanner {
  const rules = rulesOf(settings);
  return {
    name: 'banned',
    async scan(message: MessageFacts, ctx: ScanContext): Promise<ScanVerdict[]> {
      const scan = new Scan(settings, rules, archives, ctx.signal);
      for (const part of message.parts) await scan.part(part);
      return scan.verdicts();
    },
  };
}
