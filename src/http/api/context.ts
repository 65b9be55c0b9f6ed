/** What the admin API's routes share: the operations, and one audit log line per change. */
import type { FastifyRequest } from 'fastify';
import type { AdminServices } from '../../admin/index.js';
import type { Metrics } from '../../observe/metrics.js';

export type LearnClass = 'spam' | 'ham';
export type LearnSubmit = (cls: LearnClass, raw: Buffer) => 'queued' | 'duplicate' | 'full';

export interface ApiContext {
  readonly admin: AdminServices;
  readonly learn?: LearnSubmit;
  readonly metrics: Metrics;
  /** Logs a change an admin made (PW-H004), with who asked (the address) and what changed. */
  audit(request: FastifyRequest, action: string, details: Record<string, unknown>): void;
}
