/**
 * `postwarden dnsbl-check [--config FILE] IP` — asks every DNS list of `policy.dnsbl` about one address, after
 * self-testing each list, and prints per list its health, its answer and what that answer is worth, then the
 * sum against `reject_at`. It asks the configured resolvers (dns.servers) and nothing else.
 *
 * Exit: 0 when every list answered and is healthy; 69 when a list is unhealthy or gave no answer (the fix is
 * printed); 65 when IP is not an address; 78 for a bad config; 64 for usage.
 */
import { DnsClient } from '../adapters/dns.js';
import { readListAnswer, type DnsList } from '../core/checks/dnsbl.js';
import { listQueryName, txtText } from '../core/dns.js';
import { Metrics } from '../observe/metrics.js';
import { createLogger } from '../observe/logger.js';
import { parseIp } from '../util/ip.js';
import { EXIT } from '../util/sysexits.js';
import { parse, UsageError } from './args.js';
import { loadOrReport } from './common.js';
import { dnsblRuntime, dnsClientOptions } from './dns.js';

export async function dnsblCheck(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { config: { type: 'string' } }, true);
  if (positionals.length !== 1) throw new UsageError('give exactly one IP address');
  const address = positionals[0] ?? '';
  const ip = parseIp(address);
  if (!ip) {
    process.stderr.write(`postwarden dnsbl-check: '${address}' is not an IP address\n`);
    return EXIT.DATAERR;
  }
  const loaded = loadOrReport(values.config);
  if (!loaded) return EXIT.CONFIG;
  const { config } = loaded;
  const resolver = new DnsClient({
    ...dnsClientOptions(config),
    cache: { ...dnsClientOptions(config).cache, maxEntries: 0 },
  });
  // Health changes are printed below, not logged.
  const runtime = dnsblRuntime(
    config,
    resolver,
    createLogger('silent'),
    new Metrics({ processMetrics: false }),
  );
  if (runtime.lists.length === 0) {
    process.stdout.write('no DNS lists configured (policy.dnsbl.lists and policy.dnsbl.dnswl are empty)\n');
    return EXIT.OK;
  }
  await runtime.selfTestAll();

  let sum = 0;
  let trouble = false;
  const out: string[] = [
    `${ip.text}: asking ${runtime.lists.length} list(s) through ${config.dns.servers.join(', ')}`,
  ];
  for (const list of runtime.lists) {
    if (ip.family === 6 && !list.ipv6) {
      out.push(`  ${label(list)}  not asked: ipv6 is off for this list`);
      continue;
    }
    const health = runtime.health
      .snapshot()
      .find((h) => h.zone === list.zone && h.list === list.name && h.family === ip.family);
    const state = health?.healthy ? 'healthy' : 'UNHEALTHY';
    const line = await describe(list, ip.text, resolver);
    if (health?.healthy && line.counted) sum += line.score;
    if (!health?.healthy || line.failed) trouble = true;
    out.push(`  ${label(list)}  ${state.padEnd(9)}  ${line.text}`);
    if (health && !health.healthy) out.push(`      ${health.reason ?? ''}\n      fix: ${health.fix ?? ''}`);
  }
  const rejectAt = config.policy.dnsbl.reject_at;
  const verdict = rejectAt > 0 && sum >= rejectAt ? 'would reject' : 'would not reject on its own';
  out.push(`sum ${sum} (reject_at ${rejectAt}): ${verdict}; healthy lists only`);
  process.stdout.write(`${out.join('\n')}\n`);
  return trouble ? EXIT.UNAVAILABLE : EXIT.OK;
}

function label(list: DnsList): string {
  return `${list.kind === 'allow' ? 'allow' : 'block'} ${list.name}`.padEnd(32);
}

async function describe(
  list: DnsList,
  address: string,
  resolver: DnsClient,
): Promise<{ text: string; score: number; counted: boolean; failed: boolean }> {
  const name = listQueryName(address, list.zone) ?? '';
  const answer = await resolver.query(name, 'A');
  if (answer.status === 'error')
    return { text: `no answer: ${answer.reason}`, score: 0, counted: false, failed: true };
  if (answer.status !== 'ok') return { text: 'not listed', score: 0, counted: false, failed: false };
  const reading = readListAnswer(list, answer.records);
  const txt = list.txt ? await resolver.query(name, 'TXT') : undefined;
  const reason = txt?.status === 'ok' ? ` "${txtText(txt.records).join(' ').slice(0, 120)}"` : '';
  const refused = reading.refused.length > 0 ? `; never counted: ${reading.refused.join('; ')}` : '';
  const what =
    reading.symbol === '' ? 'answered, no counting code' : `${reading.symbol} score ${reading.score}`;
  return {
    text: `${answer.records.join(', ')} → ${what}${reason}${refused}`,
    score: reading.score,
    counted: reading.symbol !== '',
    failed: false,
  };
}
