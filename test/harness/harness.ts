/**
 * test/harness/harness.ts: drive the integration mail stack (test/harness/harness.sh) from node:test.
 *
 * `startHarness()` runs install.sh (installs Postfix, Dovecot and swaks when one is missing; quiet
 * otherwise), then `harness.sh up` (Postfix on 127.0.0.1:SMTP_PORT with SASL through Dovecot, Dovecot
 * LMTP/IMAP, smtp-sink as relayhost), and returns a `Harness` to send mail with swaks, read Postfix's
 * log, change main.cf, and look at the Maildirs and the sink. `stop()` runs `harness.sh down`.
 *
 * Ports and the state dir come from the environment harness.sh reads (HARNESS_DIR, SMTP_PORT, ...),
 * optionally overridden per call with `opts.env`; harness.sh writes what it used to $HARNESS_DIR/harness.env.
 * One dir and port set serves one harness at a time: `up` tears down whatever runs there first, so
 * test files that run in parallel need their own HARNESS_DIR and ports (or --test-concurrency=1).
 *
 * Failure: startHarness rejects with an Error holding the script's output (which names the daemon's
 * log file and prints its tail). swaks() never rejects for an SMTP refusal: the exit code and the
 * replies are data (swaks exits 24 on a rejected RCPT, 28 on failed AUTH). waitForLog() rejects after
 * its timeout with the log text it saw. A safety net stops the stack when the process exits without
 * stop().
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statSync,
  utimesSync,
} from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface StartOptions {
  /** 'off' or 'inet:127.0.0.1:PORT' (HARNESS_POLICY); harness.sh's default is inet:127.0.0.1:20060. */
  policy?: string;
  /** Raw main.cf lines (`name = value`), applied last with `postconf -e` (HARNESS_POSTFIX_EXTRA). */
  extraMainCf?: string[];
  /** A Dovecot config file `!include`d last, overriding the defaults (HARNESS_DOVECOT_INCLUDE). */
  dovecotInclude?: string;
  /** More environment for harness.sh, e.g. { HARNESS_DIR: '/tmp/pw-x', SMTP_PORT: '3525' }. */
  env?: Record<string, string>;
}

export interface SwaksResult {
  /** swaks' exit code: 0 delivered, 24 rejected at RCPT, 28 AUTH failed, ... */
  code: number;
  /** Everything swaks printed (stdout, then stderr). */
  transcript: string;
  /** The last server reply line before swaks' QUIT, e.g. '554 5.7.1 <x@remote.test>: Relay access denied'. */
  lastReply: string;
  /** Every server reply line, in order (without swaks' `<-` / `<**` prefix). */
  replies: string[];
}

export interface Harness {
  readonly dir: string;
  readonly smtpPort: number;
  readonly sinkPort: number;
  readonly lmtpPort: number;
  readonly imapPort: number;
  readonly authPort: number;
  readonly policy: string;
  /** Postfix config dir, for `postconf -c` / `postfix -c`. */
  readonly postfixConfDir: string;
  stop(): Promise<void>;
  /** The whole Postfix log ($HARNESS_DIR/log/postfix.log). */
  postfixLog(): string;
  /** The log's current size in bytes: pass it to logSince()/waitForLog() to see only what came after. */
  logMark(): number;
  logSince(mark: number): string;
  /** Polls the log after `since` until `re` matches; resolves with the matching line(s). */
  waitForLog(re: RegExp, since: number, timeoutMs: number): Promise<string>;
  /** `postconf -c <conf> ...args`; resolves with its stdout. Edits (-e) take effect after reload(). */
  postconf(args: string[]): Promise<string>;
  /** `postfix reload`, resolved once the master has logged that it reloaded. */
  reload(): Promise<void>;
  /** swaks with `--server 127.0.0.1 --port <smtpPort>` put in front of args. */
  swaks(args: string[]): Promise<SwaksResult>;
  /** Full paths of the messages smtp-sink received (one file each), sorted by name (= time). */
  sinkFiles(): string[];
  /** Messages in the user's Maildir INBOX (new + cur); user is 'alice' or 'alice@example.test'. */
  maildirCount(user: string): number;
  /** The text of every message in the user's Maildir INBOX (new, then cur); user as for maildirCount. */
  maildirMessages(user: string): string[];
  /**
   * Polls the user's Maildir until `count` messages satisfy `match` (e.g. `tagged(tag)`), and resolves with
   * those; with fewer only when `timeoutMs` passed first (nothing is thrown: the caller asserts on the count).
   */
  waitForMessages(
    user: string,
    match: (message: string) => boolean,
    count?: number,
    timeoutMs?: number,
  ): Promise<string[]>;
  /** The first message in the user's Maildir that satisfies `match`, waiting (bounded); rejects on timeout. */
  waitForMessage(user: string, match: (message: string) => boolean, timeoutMs?: number): Promise<string>;
}

/** The header tests put on a message to find it again: `X-Pw-Test: <tag>`. */
export const TAG_HEADER = 'X-Pw-Test';

/** A match for Harness.waitForMessage(s): the message carries `X-Pw-Test: <tag>`. */
export const tagged =
  (tag: string) =>
  (message: string): boolean =>
    message.includes(`${TAG_HEADER}: ${tag}`);

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command without a shell; never rejects on a non-zero exit, only on spawn errors or timeout. */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    let exitCode: number | undefined;
    let settled = false;
    const finish = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({
        code: exitCode ?? -1,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    };
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')}: no exit within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('error', (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`${cmd}: ${e.message}`));
    });
    child.on('exit', (code, signal) => {
      exitCode = code ?? (signal ? 128 : -1);
      // A daemon that inherited our pipes would keep 'close' from ever firing: don't wait for it.
      setTimeout(finish, 2000).unref();
    });
    child.on('close', finish);
  });
}

/** The folder holding harness.sh: next to this module (run from source), or test/harness above it (dist/). */
function scriptsDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  if (existsSync(path.join(dir, 'harness.sh'))) return dir;
  for (;;) {
    const candidate = path.join(dir, 'test', 'harness');
    if (existsSync(path.join(candidate, 'harness.sh'))) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  const fromCwd = path.join(process.cwd(), 'test', 'harness');
  if (existsSync(path.join(fromCwd, 'harness.sh'))) return fromCwd;
  throw new Error(
    'harness: cannot find test/harness/harness.sh above this module or in the current directory',
  );
}

function parseEnvFile(file: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) values.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return values;
}

/** Server reply lines from a swaks transcript: `<-` (ok), `<**` (error), `<~` / `<~*` (TLS). */
export function parseSwaks(transcript: string): { lastReply: string; replies: string[] } {
  const replies: string[] = [];
  let lastReply = '';
  let quitSent = false;
  for (const line of transcript.split(/\r?\n/)) {
    const reply = /^<(?:-|\*\*|~\*?) +(.*)$/.exec(line);
    if (reply) {
      const text = reply[1] ?? '';
      replies.push(text);
      if (!quitSent) lastReply = text;
    } else if (/^ *(?:->|~>|\*\*>) +QUIT\b/i.test(line)) {
      quitSent = true;
    }
  }
  return { lastReply, replies };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Postfix re-reads a config file whose mtime is under ~2 s old until it is older (300 ms steps), so a
 * reload right after `postconf -e` would stall ~1.8 s. Backdate the files instead.
 */
function backdate(files: string[]): void {
  const past = new Date(Date.now() - 60_000);
  for (const f of files) if (existsSync(f)) utimesSync(f, past, past);
}

class MailHarness implements Harness {
  readonly dir: string;
  readonly smtpPort: number;
  readonly sinkPort: number;
  readonly lmtpPort: number;
  readonly imapPort: number;
  readonly authPort: number;
  readonly policy: string;
  readonly postfixConfDir: string;
  private readonly logFile: string;
  private readonly sinkDir: string;
  private readonly mailDir: string;
  private stopped = false;
  private readonly onExit = (): void => {
    // Safety net: a test process that ends without stop() must not leave daemons behind.
    if (!this.stopped) spawnSync('bash', [this.script, 'down'], { env: this.env, stdio: 'ignore' });
  };

  constructor(
    private readonly script: string,
    private readonly env: NodeJS.ProcessEnv,
    values: Map<string, string>,
  ) {
    const need = (key: string): string => {
      const v = values.get(key);
      if (v === undefined || v === '') throw new Error(`harness: ${key} missing from harness.env`);
      return v;
    };
    const port = (key: string): number => Number.parseInt(need(key), 10);
    this.dir = need('HARNESS_DIR');
    this.smtpPort = port('SMTP_PORT');
    this.sinkPort = port('SINK_PORT');
    this.lmtpPort = port('LMTP_PORT');
    this.imapPort = port('IMAP_PORT');
    this.authPort = port('DOVECOT_AUTH_PORT');
    this.policy = need('HARNESS_POLICY');
    this.postfixConfDir = need('POSTFIX_CONF');
    this.logFile = need('POSTFIX_LOG');
    this.sinkDir = need('SINK_DIR');
    this.mailDir = need('MAIL_DIR');
    process.once('exit', this.onExit);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    const r = await run('bash', [this.script, 'down'], this.env, 60_000);
    if (r.code !== 0) throw new Error(`harness.sh down failed (exit ${r.code}):\n${r.stdout}${r.stderr}`);
    this.stopped = true;
    process.removeListener('exit', this.onExit);
  }

  postfixLog(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8') : '';
  }

  logMark(): number {
    return existsSync(this.logFile) ? statSync(this.logFile).size : 0;
  }

  logSince(mark: number): string {
    if (!existsSync(this.logFile)) return '';
    const fd = openSync(this.logFile, 'r');
    try {
      const size = statSync(this.logFile).size;
      const start = mark <= size ? mark : 0;
      const buf = Buffer.alloc(size - start);
      let got = 0;
      while (got < buf.length) {
        const n = readSync(fd, buf, got, buf.length - got, start + got);
        if (n === 0) break;
        got += n;
      }
      return buf.subarray(0, got).toString('utf8');
    } finally {
      closeSync(fd);
    }
  }

  async waitForLog(re: RegExp, since: number, timeoutMs: number): Promise<string> {
    const once = new RegExp(re.source, re.flags.replace(/[gy]/g, ''));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = this.logSince(since);
      const m = once.exec(text);
      if (m) {
        const start = text.lastIndexOf('\n', m.index) + 1;
        const nl = text.indexOf('\n', m.index + m[0].length);
        return text.slice(start, nl === -1 ? text.length : nl);
      }
      if (Date.now() >= deadline) {
        throw new Error(
          `waitForLog: no match for ${re} within ${timeoutMs} ms; the log since the mark:\n${text}`,
        );
      }
      await sleep(100);
    }
  }

  async postconf(args: string[]): Promise<string> {
    const r = await run('postconf', ['-c', this.postfixConfDir, ...args], this.env, 30_000);
    if (r.code !== 0) throw new Error(`postconf ${args.join(' ')} failed (exit ${r.code}): ${r.stderr}`);
    backdate([path.join(this.postfixConfDir, 'main.cf'), path.join(this.postfixConfDir, 'master.cf')]);
    return r.stdout;
  }

  async reload(): Promise<void> {
    backdate([path.join(this.postfixConfDir, 'main.cf'), path.join(this.postfixConfDir, 'master.cf')]);
    const mark = this.logMark();
    const r = await run('postfix', ['-c', this.postfixConfDir, 'reload'], this.env, 30_000);
    if (r.code !== 0) throw new Error(`postfix reload failed (exit ${r.code}): ${r.stdout}${r.stderr}`);
    await this.waitForLog(/postfix\/master\[\d+\]: reload -- version/, mark, 10_000);
  }

  async swaks(args: string[]): Promise<SwaksResult> {
    const r = await run(
      'swaks',
      ['--server', '127.0.0.1', '--port', String(this.smtpPort), ...args],
      this.env,
      120_000,
    );
    const transcript = r.stdout + r.stderr;
    return { code: r.code, transcript, ...parseSwaks(transcript) };
  }

  sinkFiles(): string[] {
    if (!existsSync(this.sinkDir)) return [];
    return readdirSync(this.sinkDir, { withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => path.join(this.sinkDir, e.name))
      .sort();
  }

  private maildir(user: string): string {
    const [local, domain = 'example.test'] = user.split('@');
    return path.join(this.mailDir, domain, local ?? user, 'Maildir');
  }

  /** The INBOX folders (new, cur) of the user's Maildir that exist. */
  private inbox(user: string): string[] {
    return ['new', 'cur'].map((sub) => path.join(this.maildir(user), sub)).filter((d) => existsSync(d));
  }

  maildirCount(user: string): number {
    return this.inbox(user).reduce((n, d) => n + readdirSync(d).length, 0);
  }

  maildirMessages(user: string): string[] {
    const messages: string[] = [];
    for (const dir of this.inbox(user)) {
      for (const file of readdirSync(dir)) {
        try {
          messages.push(readFileSync(path.join(dir, file), 'utf8'));
        } catch {
          // moved from new to cur (or deleted) since the listing
        }
      }
    }
    return messages;
  }

  async waitForMessages(
    user: string,
    match: (message: string) => boolean,
    count = 1,
    timeoutMs = 5000,
  ): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.maildirMessages(user).filter(match);
      if (found.length >= count || Date.now() > deadline) return found;
      await sleep(50);
    }
  }

  async waitForMessage(user: string, match: (message: string) => boolean, timeoutMs = 5000): Promise<string> {
    const [message] = await this.waitForMessages(user, match, 1, timeoutMs);
    if (message === undefined) {
      const seen = this.maildirCount(user);
      throw new Error(
        `waitForMessage: none of the ${seen} message(s) in ${this.maildir(user)} matched within ${timeoutMs} ms`,
      );
    }
    return message;
  }
}

/** Installs what is missing, brings the stack up (tearing down a previous one in the same dir), and returns it. */
export async function startHarness(opts: StartOptions = {}): Promise<Harness> {
  const dir = scriptsDir();
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env };
  if (opts.policy !== undefined) env['HARNESS_POLICY'] = opts.policy;
  if (opts.extraMainCf !== undefined) env['HARNESS_POSTFIX_EXTRA'] = opts.extraMainCf.join('\n');
  if (opts.dovecotInclude !== undefined) env['HARNESS_DOVECOT_INCLUDE'] = opts.dovecotInclude;

  const install = await run('bash', [path.join(dir, 'install.sh')], env, 900_000);
  if (install.code !== 0) {
    throw new Error(
      `test/harness/install.sh failed (exit ${install.code}):\n${install.stdout}${install.stderr}`,
    );
  }
  const script = path.join(dir, 'harness.sh');
  const up = await run('bash', [script, 'up'], env, 120_000);
  if (up.code !== 0) throw new Error(`harness.sh up failed (exit ${up.code}):\n${up.stdout}${up.stderr}`);

  const stateDir = env['HARNESS_DIR'] || '/tmp/pw-it'; // harness.sh's default, also when set but empty
  return new MailHarness(script, env, parseEnvFile(path.join(stateDir, 'harness.env')));
}
