/**
 * The maps layer's public API: Postfix-style `type:name` lookup tables (inline:, file:, cidr:, regexp:, ldap:), the
 * registry that shares and reloads them, spec validation for check-config, and the stable event codes.
 * Lookups answer found / notfound / error as values (core/ports.ts); nothing here throws for a bad table.
 */
export {
  DEFAULT_MAP_LIMITS,
  openInline,
  openTable,
  type LoadedTable,
  type MapEnv,
  type MapLimits,
  type OpenResult,
} from './drivers.js';
export {
  MAP_EVENT_CODES,
  type MapCodeDoc,
  type MapEvent,
  type MapEventCode,
  type MapEventLevel,
} from './events.js';
export { parseKey, type ParsedKey } from './matcher.js';
export { MapRegistry, type MapHealth, type MapRegistryOptions } from './registry.js';
export {
  entryProblem,
  isSpec,
  LDAP_QUERY_NAME,
  MAP_TYPES,
  MapSpecError,
  parseSpec,
  validateEntries,
  validateMapRef,
  validateSpec,
  type MapSpec,
  type MapType,
} from './spec.js';
export {
  expandFilter,
  filterProblem,
  LdapMaps,
  resultFormatProblem,
  type LdapCacheSettings,
  type LdapLookupEvent,
  type LdapMapsOptions,
  type LdapQuery,
  type RemoteTable,
} from './ldap.js';
