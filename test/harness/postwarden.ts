/**
 * A postwarden instance for integration tests: the built bin (`dist/src/cli/main.js serve`) as a child process
 * with a config written to a work dir and its own log file, ready when its HTTP face answers /healthz and, when
 * it is given a policy address, its policy port takes connections. Read its JSON log lines, decision lines,
 * /readyz and /metrics; signal it (SIGHUP), stop it (SIGTERM, then SIGKILL) or kill it hard.
 *
 * Several instances may share one work dir: each has its own `postwarden-<name>.yml` and `.log`. Relative paths
 * in a config (a map file, a SQLite store) resolve against the work dir.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PolicyClient } from '../../src/policy/client.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = path.join(ROOT, 'dist/src/cli/main.js');

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export interface Readyz {
  status: string;
  checks: { name: string; ready: boolean; reason?: string; critical?: boolean }[];
}

/** One `policy.decision` log line (src/policy/service.ts), the fields tests read. */
export interface DecisionLine {
  event: 'policy.decision';
  /** Postfix's protocol_state: RCPT, END-OF-MESSAGE, ... */
  state: string;
  client?: string;
  sender?: string;
  /** Absent outside RCPT (e.g. at END-OF-MESSAGE). */
  recipient?: string;
  /** What postwarden answered Postfix, e.g. `DUNNO`, `PREPEND Received-SPF: ...`, `554 5.7.1 ...`. */
  action: string;
  score: number;
  verdicts: { check: string; symbol: string; score: number; reason: string }[];
  failures?: { check: string; code: string; reason: string }[];
  on_error?: boolean;
  /** How long the decision took. */
  ms: number;
}

/** How a stopped instance ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class Postwarden {
  readonly logFile: string;
  readonly configFile: string;
  private child: ChildProcess | undefined;

  constructor(
    readonly name: string,
    readonly workDir: string,
    /** host:port of its HTTP face, from the config. */
    readonly http: string,
    /** host:port of its policy face, from the config: start() also waits for it, and `policy` returns it. */
    private readonly policyAddress?: string,
  ) {
    this.logFile = path.join(workDir, `postwarden-${name}.log`);
    this.configFile = path.join(workDir, `postwarden-${name}.yml`);
  }

  /** host:port of its policy face (the one given to the constructor; throws when none was). */
  get policy(): string {
    if (this.policyAddress === undefined) throw new Error(`postwarden ${this.name}: no policy address given`);
    return this.policyAddress;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Started and not exited (a stop() or kill() counts as exited). */
  get running(): boolean {
    const child = this.child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  /**
   * Writes the config, starts serve, and waits (bounded) until /healthz answers and, with a policy address, the
   * policy port takes a connection. Rejects with the log's tail when it does not, or exits first.
   */
  async start(config: string, timeoutMs = 10_000): Promise<void> {
    writeFileSync(this.configFile, config);
    const out = openSync(this.logFile, 'a');
    const child = spawn(process.execPath, [BIN, 'serve', '--config', this.configFile], {
      stdio: ['ignore', out, out],
    });
    this.child = child;
    const deadline = Date.now() + timeoutMs;
    while (!(await this.answers())) {
      if (Date.now() > deadline || child.exitCode !== null) {
        throw new Error(`postwarden ${this.name} did not start: ${this.log().slice(-3000)}`);
      }
      await sleep(100);
    }
  }

  private async answers(): Promise<boolean> {
    try {
      if (!(await fetch(`http://${this.http}/healthz`)).ok) return false;
      if (this.policyAddress !== undefined) (await PolicyClient.connect(this.policyAddress, 500)).close();
      return true;
    } catch {
      return false; // not listening yet
    }
  }

  /** SIGTERM, then SIGKILL after 5 s; resolves when it has exited, with how (undefined: it was not running). */
  async stop(): Promise<Exit | undefined> {
    return this.end('SIGTERM', 5000);
  }

  /** SIGKILL at once: a crash. */
  async kill(): Promise<Exit | undefined> {
    return this.end('SIGKILL', 0);
  }

  /** Sends a signal (e.g. SIGHUP: re-read the maps) and returns at once. */
  signal(signal: NodeJS.Signals): void {
    if (!this.child?.kill(signal)) throw new Error(`postwarden ${this.name}: not running, no ${signal}`);
  }

  private async end(signal: NodeJS.Signals, graceMs: number): Promise<Exit | undefined> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return undefined;
    const exited = new Promise<Exit>((resolve) =>
      child.once('exit', (code, sig) => resolve({ code, signal: sig })),
    );
    child.kill(signal);
    const timer = graceMs > 0 ? setTimeout(() => child.kill('SIGKILL'), graceMs) : undefined;
    const exit = await exited;
    clearTimeout(timer);
    return exit;
  }

  log(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8') : '';
  }

  /** Every JSON line of the log (a line still being written is skipped). */
  lines(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const line of this.log().split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // partial last line
      }
    }
    return out;
  }

  /**
   * Lines of one event (`policy.decision`, `filter.decision`) matching `where`, waiting (bounded) for `count`;
   * fewer only when the timeout passed first (nothing is thrown: the caller asserts).
   */
  async events(
    event: string,
    where: (line: Record<string, unknown>) => boolean,
    count = 1,
    timeoutMs = 5000,
  ): Promise<Record<string, unknown>[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines().filter((l) => l['event'] === event && where(l));
      if (found.length >= count || Date.now() > deadline) return found;
      await sleep(50);
    }
  }

  /** The decision lines logged so far, in log order. */
  decisions(): DecisionLine[] {
    return this.lines().filter((l) => l['event'] === 'policy.decision') as unknown as DecisionLine[];
  }

  /**
   * The decision lines for one envelope sender, in log order, waiting (bounded) as events() does until there
   * are `count`. Only RCPT-state lines unless `allStates`.
   */
  async decisionsFor(
    sender: string,
    count = 1,
    opts: { allStates?: boolean; timeoutMs?: number } = {},
  ): Promise<DecisionLine[]> {
    const found = await this.events(
      'policy.decision',
      (l) => l['sender'] === sender && (opts.allStates === true || l['state'] === 'RCPT'),
      count,
      opts.timeoutMs,
    );
    return found as unknown as DecisionLine[];
  }

  async readyz(): Promise<{ status: number; body: Readyz }> {
    const r = await fetch(`http://${this.http}/readyz`);
    return { status: r.status, body: (await r.json()) as Readyz };
  }

  /**
   * Polls /readyz until `ok` holds (e.g. `(r) => r.status === 503`) and resolves with that answer; rejects after
   * `timeoutMs` with the last one, saying it waited for `what`.
   */
  async readyzUntil(
    what: string,
    ok: (r: { status: number; body: Readyz }) => boolean,
    timeoutMs = 5000,
  ): Promise<{ status: number; body: Readyz }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.readyz();
      if (ok(r)) return r;
      if (Date.now() > deadline) {
        throw new Error(
          `postwarden ${this.name}: /readyz not ${what} after ${timeoutMs} ms: ${r.status} ${JSON.stringify(r.body)}`,
        );
      }
      await sleep(50);
    }
  }

  async metrics(): Promise<string> {
    return (await fetch(`http://${this.http}/metrics`)).text();
  }
}
