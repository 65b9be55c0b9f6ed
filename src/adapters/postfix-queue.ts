/**
 * Postfix's hold queue, through Postfix's own tools: `postqueue -j` lists the queue (one JSON object per line,
 * postqueue(1)), `postsuper -H -` releases and `postsuper -d -` deletes the queue ids it reads on stdin
 * (postsuper(1)). Both take `-c <config_dir>` when one is configured. postsuper needs root: with `sudo` it runs
 * as `sudo -n postsuper …`, which the admin allows in sudoers for exactly that command.
 *
 * Contract: `held()` resolves with the messages in the hold queue; `release`/`remove` act only on queue ids that
 * are in the hold queue right now (so a stale id recorded at HOLD time, or one of another queue, is never
 * touched) and resolve with the ids they acted on. Queue ids are checked against Postfix's alphabet before they
 * reach a command. Output is bounded (MAX_OUTPUT_BYTES) and every command has a deadline.
 *
 * Failure behaviour: a command that cannot start, exits non-zero, times out or prints more than the bound
 * rejects with PostfixQueueError carrying its stderr (first line); nothing is retried.
 */
import { spawn } from 'node:child_process';

export interface PostfixQueueOptions {
  /** Postfix's config dir (`-c`); '' = Postfix's default. */
  readonly configDir: string;
  /** Run postsuper through `sudo -n`. */
  readonly sudo: boolean;
  readonly timeoutMs?: number;
  /** Where the tools are; default: found on PATH (and /usr/sbin). */
  readonly postqueue?: string;
  readonly postsuper?: string;
}

export interface QueuedMessage {
  readonly queueId: string;
  readonly queueName: string;
  readonly sender: string;
  readonly recipients: readonly string[];
  readonly arrivalTime: number;
}

export class PostfixQueueError extends Error {
  constructor(
    readonly command: string,
    readonly reason: string,
  ) {
    super(`${command}: ${reason}`);
  }
}

export const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;
/** Released messages scheduled for immediate delivery one by one (one process each). */
export const MAX_SCHEDULED = 20;
const QUEUE_ID = /^[0-9A-Za-z]{5,32}$/;
const PATH = `${process.env['PATH'] ?? ''}:/usr/sbin:/usr/local/sbin`;

function run(command: string, args: readonly string[], input: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, PATH },
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    let failed: string | undefined;
    child.stdout.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_OUTPUT_BYTES) {
        failed = `printed more than ${MAX_OUTPUT_BYTES} bytes`;
        child.kill('SIGKILL');
      } else out.push(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (err.length < 64) err.push(chunk);
    });
    child.on('error', (error) => reject(new PostfixQueueError(command, error.message)));
    child.on('close', (code, signal) => {
      if (failed) return reject(new PostfixQueueError(command, failed));
      if (code === 0) return resolve(Buffer.concat(out).toString('utf8'));
      const stderr = Buffer.concat(err).toString('utf8').trim().split('\n')[0] ?? '';
      const why = signal ? `killed by ${signal} (deadline ${timeoutMs} ms?)` : `exit ${code}`;
      reject(new PostfixQueueError(command, stderr ? `${why}: ${stderr}` : why));
    });
    child.stdin.on('error', () => undefined); // a command that exits early closes its stdin
    child.stdin.end(input);
  });
}

/** One line of `postqueue -j`; undefined for a line that is not one. */
export function parseQueueLine(line: string): QueuedMessage | undefined {
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (o === null || typeof o !== 'object') return undefined;
  const r = o as Record<string, unknown>;
  if (typeof r['queue_id'] !== 'string' || typeof r['queue_name'] !== 'string') return undefined;
  const recipients = Array.isArray(r['recipients'])
    ? r['recipients'].flatMap((x: unknown) => {
        const address = (x as { address?: unknown } | null)?.address;
        return typeof address === 'string' ? [address] : [];
      })
    : [];
  return {
    queueId: r['queue_id'],
    queueName: r['queue_name'],
    sender: typeof r['sender'] === 'string' ? r['sender'] : '',
    recipients,
    arrivalTime: typeof r['arrival_time'] === 'number' ? r['arrival_time'] : 0,
  };
}

export class PostfixQueue {
  private readonly timeoutMs: number;

  constructor(private readonly options: PostfixQueueOptions) {
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  private get postqueue(): string {
    return this.options.postqueue ?? 'postqueue';
  }

  private configArgs(): string[] {
    return this.options.configDir === '' ? [] : ['-c', this.options.configDir];
  }

  /** The messages in the hold queue. */
  async held(): Promise<QueuedMessage[]> {
    const out = await run(
      this.options.postqueue ?? 'postqueue',
      [...this.configArgs(), '-j'],
      '',
      this.timeoutMs,
    );
    return out
      .split('\n')
      .map(parseQueueLine)
      .filter((m): m is QueuedMessage => m !== undefined && m.queueName === 'hold');
  }

  /**
   * Releases those of `queueIds` that are held, and asks for the immediate delivery of the first
   * MAX_SCHEDULED (`postqueue -i`; the rest go at the queue manager's next scan of the deferred queue, within
   * queue_run_delay); resolves with the released ids.
   */
  async release(queueIds: readonly string[]): Promise<string[]> {
    const released = await this.superuser('-H', queueIds);
    for (const id of released.slice(0, MAX_SCHEDULED)) {
      // Best effort: a message already on its way is not an error worth failing the release for.
      await run(this.postqueue, [...this.configArgs(), '-i', id], '', this.timeoutMs).catch(() => undefined);
    }
    return released;
  }

  /** Deletes those of `queueIds` that are held; resolves with them. */
  remove(queueIds: readonly string[]): Promise<string[]> {
    return this.superuser('-d', queueIds);
  }

  private async superuser(flag: '-H' | '-d', queueIds: readonly string[]): Promise<string[]> {
    const wanted = new Set(queueIds.filter((id) => QUEUE_ID.test(id)));
    if (wanted.size === 0) return [];
    const ids = (await this.held()).map((m) => m.queueId).filter((id) => wanted.has(id));
    if (ids.length === 0) return [];
    const postsuper = this.options.postsuper ?? 'postsuper';
    // `-d -` / `-H -` read the ids from stdin; `-d` is limited to the hold queue, so a message that left it
    // meanwhile is not deleted from another queue.
    const args = [...this.configArgs(), flag, '-', ...(flag === '-d' ? ['hold'] : [])];
    const [command, argv] = this.options.sudo ? ['sudo', ['-n', postsuper, ...args]] : [postsuper, args];
    await run(command, argv, `${ids.join('\n')}\n`, this.timeoutMs);
    return ids;
  }
}
