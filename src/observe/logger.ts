/**
 * Logging: pino JSON lines on stdout, secrets redacted, and a throttle for events that an abusive client could
 * repeat thousands of times a second (one line per code per window, with the count of those left out).
 */
import { pino, type DestinationStream, type Logger } from 'pino';
import type { Code } from './codes.js';

export type { Logger } from 'pino';

// Explicit paths only: wildcard paths are walked on every line (measured at ~9% of a logged policy request).
// Decision lines carry no secrets by construction; these guard the HTTP face and configuration errors.
const REDACT = ['password', 'token', 'authorization', 'headers.authorization', 'req.headers.authorization'];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: 'postwarden' },
    redact: { paths: REDACT, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  return destination ? pino(options, destination) : pino(options);
}

/** Logs a coded warning at most once per `windowMs` per code; the next line carries how many were left out. */
export function createThrottledLog(logger: Logger, windowMs = 10_000) {
  const state = new Map<Code, { until: number; suppressed: number }>();
  return (code: Code, fields: Record<string, unknown>, message: string, now = Date.now()): void => {
    const entry = state.get(code);
    if (entry && now < entry.until) {
      entry.suppressed += 1;
      return;
    }
    const suppressed = entry?.suppressed ?? 0;
    state.set(code, { until: now + windowMs, suppressed: 0 });
    logger.warn({ code, ...fields, ...(suppressed > 0 ? { suppressed } : {}) }, message);
  };
}
