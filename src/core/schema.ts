/**
 * Schema pieces every check's config fragment shares. zod is pure (no I/O), so check modules keep their
 * fragments beside their code; src/config composes them into the one schema.
 */
import { z } from 'zod';

export const modeSchema = z
  .enum(['off', 'observe', 'enforce'])
  .describe('off: not run; observe: run, log and count what it would do, change nothing; enforce: act');

/**
 * A lookup table reference: one `type:name` spec (`file:/etc/postwarden/block`), or a list whose items are
 * entries (IPs, CIDRs, addresses, domains) or `type:name` specs, in the order they are searched.
 */
export const mapRefSchema = z
  .union([z.string().min(1), z.array(z.string().min(1)).max(100_000)])
  .meta({ title: 'map' });

export type MapRef = z.infer<typeof mapRefSchema>;

export const scoreSchema = z.number().min(-1000).max(1000);
