/**
 * The policy checks this build knows, by config name, in their default order. The order admins configure in
 * `policy.checks` is the order they run in: it reads like the config.
 */
export {
  BIG_SENDER_CLIENT_DOMAINS,
  clientNetwork,
  createGreylistCheck,
  greylistSchema,
  normalizeSender,
  tripletKey,
  type GreylistSettings,
} from './greylist.js';
export {
  createDnsblCheck,
  DnsListHealth,
  dnsblSchema,
  dnsLists,
  selfTest,
  type DnsblSettings,
  type DnsList,
  type ListHealth,
} from './dnsbl.js';
export { createDnsSanityCheck, dnsSanitySchema, type DnsSanitySettings } from './dns-sanity.js';
export { createHeloCheck, heloSchema, type HeloSettings } from './helo.js';
export { createLimitsCheck, limitsSchema, type LimitsSettings } from './limits.js';
export {
  createRatelimitCheck,
  ratelimitSchema,
  RATE_KINDS,
  userBucketKeys,
  type RatelimitSettings,
} from './ratelimit.js';
export {
  createListsCheck,
  listsSchema,
  type ListsSettings,
  type ListTables,
  type ListTarget,
} from './lists.js';
export { createSpfCheck, spfSchema, type SpfEvaluator, type SpfSettings } from './spf.js';
export { createRelayCheck, relaySchema, type RelaySettings } from './relay.js';
export {
  createSenderOwnershipCheck,
  senderOwnershipSchema,
  type SenderOwnershipSettings,
} from './sender-ownership.js';

export { authBlockSchema, createAuthBlockCheck, type AuthBlockSettings } from './auth-block.js';
export { createRecipientsCheck, recipientsSchema, type RecipientsSettings } from './recipients.js';

export const POLICY_CHECK_NAMES = [
  'relay',
  'sender_ownership',
  'recipients',
  'limits',
  'auth_block',
  'ratelimit',
  'lists',
  'helo',
  'dns_sanity',
  'dnsbl',
  'spf',
  'greylist',
] as const;
export type PolicyCheckName = (typeof POLICY_CHECK_NAMES)[number];
