/**
 * Clock sane: the local clock against a reference on loopback (Redis TIME, when the store is Redis on this
 * host), and NTP synchronization as systemd reports it (`timedatectl show -p NTPSynchronized --value`). No
 * network call leaves the host. Greylisting, rate windows and DKIM/expiry checks all read the clock.
 */
import { execFile } from 'node:child_process';
import { withDeadline } from '../util/deadline.js';
import { finding, type Finding, ok } from './finding.js';

/** Skew beyond which greylisting and rate windows of hosts sharing the store disagree. */
const WARN_SKEW_MS = 2000;
const ERROR_SKEW_MS = 60_000;

export type NtpState = 'yes' | 'no' | { readonly unavailable: string };

export function judgeNtp(state: NtpState): Finding {
  if (state === 'yes') return ok('clock', 'the clock is NTP-synchronized (timedatectl)');
  if (state === 'no') {
    return finding(
      'clock',
      'warning',
      'the clock is not NTP-synchronized (timedatectl NTPSynchronized=no)',
      'enable time synchronization: timedatectl set-ntp true (systemd-timesyncd), or install chrony',
    );
  }
  return finding(
    'clock',
    'info',
    `NTP state unknown (${state.unavailable})`,
    'check time synchronization by hand (chronyc tracking, ntpq -p)',
  );
}

/** `skewMs` = local − reference. */
export function judgeSkew(reference: string, skewMs: number): Finding {
  const abs = Math.abs(skewMs);
  const text = `the local clock is ${abs} ms ${skewMs > 0 ? 'ahead of' : 'behind'} ${reference}`;
  if (abs < WARN_SKEW_MS) return ok('clock', text);
  return finding(
    'clock',
    abs >= ERROR_SKEW_MS ? 'error' : 'warning',
    `${text}: greylist delays and rate windows disagree between hosts`,
    'synchronize both clocks with NTP (timedatectl set-ntp true, or chrony)',
  );
}

/** timedatectl's answer, or why there is none (no systemd, a container). */
export function readNtp(timeoutMs: number): Promise<NtpState> {
  return new Promise((resolve) => {
    execFile(
      'timedatectl',
      ['show', '-p', 'NTPSynchronized', '--value'],
      { timeout: timeoutMs },
      (error, stdout, stderr) => {
        const value = stdout.trim();
        if (!error && (value === 'yes' || value === 'no')) return resolve(value);
        const e = error as NodeJS.ErrnoException | null;
        resolve({
          unavailable:
            e?.code === 'ENOENT'
              ? 'no timedatectl'
              : (stderr.trim() || e?.message || `answered '${value}'`).replace(/\s+/g, ' ').slice(0, 200),
        });
      },
    );
  });
}

/**
 * Local − Redis TIME in ms, measured at the midpoint of the round trip, from a Redis on loopback (the caller
 * checks); rejects when it does not answer within `timeoutMs`.
 */
export async function redisSkew(
  url: string,
  auth: { username?: string; password?: string },
  timeoutMs: number,
): Promise<number> {
  const { Redis } = await import('ioredis');
  const client = new Redis(url, {
    ...auth,
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    enableReadyCheck: false, // a hung server must fail TIME within commandTimeout, not hang in INFO
    retryStrategy: () => null,
  });
  client.on('error', () => undefined); // the rejection below carries it
  try {
    await withDeadline(client.connect(), timeoutMs, () => new Error(`no connection within ${timeoutMs} ms`));
    const before = Date.now();
    const [seconds, micros] = await client.time();
    const local = (before + Date.now()) / 2;
    return Math.round(local - (Number(seconds) * 1000 + Number(micros) / 1000));
  } finally {
    client.disconnect();
  }
}
