/**
 * The `ldap` section: one directory server and the named queries that `ldap:NAME` maps refer to. The filters'
 * syntax and the names the maps refer to are checked by the maps layer when the config loads (cli/common.ts),
 * since it owns the expansion rules.
 */
import { z } from 'zod';

const attributeSchema = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9-]{0,63}$/, 'not an attribute name; use e.g. mail or mailRoutingAddress');

export const ldapQuerySchema = z
  .strictObject({
    base: z.string().max(1024).default('').describe('Search base DN; empty = ldap.base'),
    filter: z
      .string()
      .min(1)
      .max(1024)
      .describe(
        'RFC 4515 filter; %s = the key, %u = its local part, %d = its domain, %1-%9 = domain labels from the right, %% = %; substituted values are escaped',
      ),
    result_attribute: z
      .union([attributeSchema, z.array(attributeSchema).min(1).max(16)])
      .describe('Attribute(s) whose values are the answer; several values are joined with commas'),
    result_format: z
      .string()
      .min(1)
      .max(256)
      .default('%s')
      .describe(
        'Each value through this template: %s the value, %u its local part, %d its domain, %S/%U/%D the key’s',
      ),
    scope: z.enum(['sub', 'one', 'base']).default('sub').describe('Search scope'),
    domains: z
      .array(z.string().min(1).max(253))
      .max(1000)
      .default([])
      .describe(
        'Only keys user@domain of these domains are looked up (Postfix ldap_table `domain`); empty = every key',
      ),
    size_limit: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .default(100)
      .describe('Entries one search may return; more makes the lookup fail (4xx)'),
    max_values: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .default(1000)
      .describe('Result values one lookup may return; more makes it fail (Postfix expansion_limit)'),
  })
  .describe('One query, used as the map ldap:NAME');

export const ldapSchema = z
  .strictObject({
    url: z
      .string()
      .regex(/^ldaps?:\/\/[^/\s]+\/?$/, 'not an LDAP URL; use ldap://host:port or ldaps://host:port')
      .default('ldap://127.0.0.1:389')
      .describe('The directory server'),
    bind_dn: z.string().max(1024).default('').describe('DN to bind as; empty = anonymous'),
    password_file: z
      .string()
      .default('')
      .describe(
        'A file holding the bind password (first line), readable by postwarden only; kept out of the config and the logs',
      ),
    base: z
      .string()
      .max(1024)
      .default('')
      .describe('Default search base of the queries, e.g. dc=example,dc=org'),
    timeout_ms: z
      .number()
      .int()
      .min(10)
      .max(60_000)
      .default(1000)
      .describe(
        'Deadline of one lookup: waiting for a connection, connecting, binding and searching; keep it under policy.check_timeout_ms',
      ),
    pool_size: z.number().int().min(1).max(64).default(4).describe('Connections to the server at most'),
    max_waiting: z
      .number()
      .int()
      .min(1)
      .max(100_000)
      .default(1000)
      .describe('Lookups waiting for a free connection at most; more fail at once'),
    reconnect_min_ms: z
      .number()
      .int()
      .min(10)
      .max(60_000)
      .default(100)
      .describe('After a failure, wait this long before connecting again (doubling each time it fails)'),
    reconnect_max_ms: z
      .number()
      .int()
      .min(10)
      .max(600_000)
      .default(5000)
      .describe(
        'Longest wait between attempts while the server is down; lookups meanwhile fail at once (4xx)',
      ),
    cache: z
      .strictObject({
        max_entries: z
          .number()
          .int()
          .min(0)
          .max(10_000_000)
          .default(10_000)
          .describe('Answers kept at most (LRU, all queries together); 0 = no cache'),
        ttl_s: z.number().int().min(0).max(86_400).default(300).describe('Time a found answer is kept'),
        negative_ttl_s: z
          .number()
          .int()
          .min(0)
          .max(86_400)
          .default(60)
          .describe('Time a not-found answer is kept (errors are never kept)'),
      })
      .prefault({})
      .describe('The lookup cache'),
    queries: z
      .record(
        z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'use letters, digits, _ and - (at most 64)'),
        ldapQuerySchema,
      )
      .default({})
      .refine((queries) => Object.keys(queries).length <= 100, {
        message: 'more than 100 queries; merge some',
      })
      .describe('Named queries: ldap.queries.users is the map ldap:users'),
  })
  .describe(
    'The LDAP directory behind ldap:NAME maps (local domains, valid recipients, aliases, sender logins)',
  );

export type LdapSettings = z.infer<typeof ldapSchema>;
