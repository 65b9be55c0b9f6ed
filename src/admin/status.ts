/**
 * The instance status (`GET /api/v1/status`): version, uptime, the faces and where they listen, and the health
 * of every dependency `/readyz` knows (store, maps, resolvers, DNS lists, clamd). Built from snapshots: it asks no
 * dependency, so it answers at once even when they hang.
 */
import { VERSION } from '../observe/version.js';

export interface ReadinessItem {
  readonly name: string;
  readonly ready: boolean;
  readonly reason?: string;
  /** false: reported (status `degraded`) without making the service unready, e.g. one failing DNS list. */
  readonly critical?: boolean;
}

export interface FaceStatus {
  readonly name: string;
  readonly listening: boolean;
  /** Where it listens, once it does. */
  readonly addresses?: readonly string[];
}

export interface StatusSources {
  /** This host's name (config `hostname` or the machine's). */
  readonly instance: string;
  readonly startedAt: Date;
  readonly faces: () => readonly FaceStatus[];
  readonly readiness: () => readonly ReadinessItem[];
}

export type ReadyState = 'ready' | 'degraded' | 'not ready';

export interface InstanceStatus {
  readonly version: string;
  readonly instance: string;
  readonly started_at: string;
  readonly uptime_s: number;
  readonly status: ReadyState;
  readonly faces: readonly FaceStatus[];
  readonly checks: readonly ReadinessItem[];
}

/** ready: all is well; degraded: only non-critical parts fail; not ready: a critical part fails. */
export function readyState(items: readonly ReadinessItem[]): ReadyState {
  if (!items.every((item) => item.ready || item.critical === false)) return 'not ready';
  return items.every((item) => item.ready) ? 'ready' : 'degraded';
}

export function instanceStatus(sources: StatusSources, now = Date.now()): InstanceStatus {
  const checks = sources.readiness();
  return {
    version: VERSION,
    instance: sources.instance,
    started_at: sources.startedAt.toISOString(),
    uptime_s: Math.max(0, Math.floor((now - sources.startedAt.getTime()) / 1000)),
    status: readyState(checks),
    faces: sources.faces(),
    checks,
  };
}
