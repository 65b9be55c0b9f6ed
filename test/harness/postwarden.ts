/**
 * A postwarden instance for integration tests: the built bin (`dist/src/cli/main.js serve`) as a child process
 * with a config written to a work dir and its own log file, ready when its HTTP face answers /healthz. Read its
 * JSON log lines, decision lines, /readyz and /metrics; stop it (SIGTERM, then SIGKILL) or kill it hard.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = path.join(ROOT, 'dist/src/cli/main.js');

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export interface Readyz {
  status: string;
  checks: { name: string; ready: boolean; reason?: string; critical?: boolean }[];
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
  ) {
    this.logFile = path.join(workDir, `postwarden-${name}.log`);
    this.configFile = path.join(workDir, `postwarden-${name}.yml`);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Writes the config, starts serve, and waits (bounded) until /healthz answers. */
  async start(config: string, timeoutMs = 10_000): Promise<void> {
    writeFileSync(this.configFile, config);
    const out = openSync(this.logFile, 'a');
    const child = spawn(process.execPath, [BIN, 'serve', '--config', this.configFile], {
      stdio: ['ignore', out, out],
    });
    this.child = child;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const response = await fetch(`http://${this.http}/healthz`);
        if (response.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline || child.exitCode !== null) {
        throw new Error(`postwarden ${this.name} did not start: ${this.log().slice(-3000)}`);
      }
      await sleep(100);
    }
  }

  /** SIGTERM, then SIGKILL after 5 s; resolves when it has exited. */
  async stop(): Promise<void> {
    await this.signal('SIGTERM', 5000);
  }

  /** SIGKILL at once: a crash. */
  async kill(): Promise<void> {
    await this.signal('SIGKILL', 0);
  }

  private async signal(signal: NodeJS.Signals, graceMs: number): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    const timer = graceMs > 0 ? setTimeout(() => child.kill('SIGKILL'), graceMs) : undefined;
    await exited;
    clearTimeout(timer);
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

  /** Lines of one event (`policy.decision`, `filter.decision`) matching `where`, waiting (bounded) for `count`. */
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

  async readyz(): Promise<{ status: number; body: Readyz }> {
    const r = await fetch(`http://${this.http}/readyz`);
    return { status: r.status, body: (await r.json()) as Readyz };
  }

  async metrics(): Promise<string> {
    return (await fetch(`http://${this.http}/metrics`)).text();
  }
}
