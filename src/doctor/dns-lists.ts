/**
 * DNS lists healthy: every configured DNSBL, DNSWL (policy.dnsbl) and URIBL (filter.uribl) passes the product's
 * own RFC 5782 self-test (src/core/checks/dnsbl.ts selfTest): its test point (127.0.0.2, a domain list's test
 * domain) listed, 127.0.0.1 (`invalid`) not. A list that lists everything ("the list says everything is listed":
 * usually the list has cut off your resolver) is an error; a list that gives no answer is a warning.
 */
import type { DnsResolver } from '../core/dns.js';
import { type DnsList, selfTest, type SelfTestOutcome } from '../core/checks/dnsbl.js';
import { finding, type Finding, ok } from './finding.js';

export function judgeList(list: DnsList, family: 4 | 6, outcome: SelfTestOutcome): Finding {
  const label = `${list.kind === 'allow' ? 'allow list' : 'list'} ${list.name} (${list.testDomain !== undefined ? 'domains' : `ipv${family}`})`;
  if (outcome.ok) return ok('dns-list', `${label} passes its self-test`);
  return finding(
    'dns-list',
    outcome.transient ? 'warning' : 'error',
    `${label}: ${outcome.reason ?? 'self-test failed'}; its answers do not count`,
    outcome.fix ?? '',
  );
}

/** Self-tests every list for every family it serves (through `resolver`, which must not cache). */
export async function checkDnsLists(lists: readonly DnsList[], resolver: DnsResolver): Promise<Finding[]> {
  if (lists.length === 0) return [ok('dns-list', 'no DNS lists configured')];
  const runs = lists.flatMap((list) =>
    (list.ipv6 ? ([4, 6] as const) : ([4] as const)).map(async (family) =>
      judgeList(list, family, await selfTest(list, family, resolver)),
    ),
  );
  return Promise.all(runs);
}
