/**
 * The SQLite store's checkpointer, run in a worker thread (src/store/sqlite.ts starts it): its own connection to
 * the file runs `PRAGMA wal_checkpoint(PASSIVE)` every `intervalMs`. A checkpoint copies the WAL back into the
 * database and fsyncs it, milliseconds on a busy disk; SQLite's automatic checkpoint would do that inside some
 * request's commit, on the event loop, stalling every policy connection (that was the greylist benchmark's p99).
 * PASSIVE never waits for readers or writers, so this thread never blocks the main one. It exits when its
 * parent closes the store (a message) or goes away; a failure ends it, and the parent then falls back to
 * SQLite's automatic checkpoint (see `onCheckpointerGone` in sqlite.ts).
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

interface CheckpointerData {
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
}

const { path, intervalMs, timeoutMs } = workerData as CheckpointerData;
const db = new Database(path, { timeout: timeoutMs });
const timer = setInterval(() => db.pragma('wal_checkpoint(PASSIVE)'), intervalMs);
parentPort?.on('message', () => {
  clearInterval(timer);
  db.close();
  parentPort?.close();
});
