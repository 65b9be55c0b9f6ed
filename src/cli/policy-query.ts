/**
 * `postwarden policy-query [--server ADDR] [--config FILE] name=value ...` — sends one request to a running
 * policy server, the way Postfix would, and prints the action. `request=smtpd_access_policy` is added when
 * missing. Exit 0 with an answer; 69 when nothing listens; 75 when the server closed or timed out (it closes
 * without a reply on a malformed request, as the protocol asks).
 */
import { loadConfig } from '../config/load.js';
import { PolicyClient, PolicyClientError } from '../policy/client.js';
import { EXIT } from '../util/sysexits.js';
import { parse, UsageError } from './args.js';

export async function policyQuery(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { server: { type: 'string' }, config: { type: 'string' }, timeout: { type: 'string', default: '10000' } },
    true,
  );
  const attributes: Record<string, string> = { request: 'smtpd_access_policy' };
  for (const pair of positionals) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`'${pair}' is not name=value`);
    attributes[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  let server = values.server;
  if (server === undefined) {
    const loaded = loadConfig(values.config);
    const listen = loaded.ok ? loaded.config.policy.listen : '127.0.0.1:10060';
    server = Array.isArray(listen) ? (listen[0] ?? '127.0.0.1:10060') : listen;
  }
  const timeout = Number(values.timeout);
  if (!Number.isInteger(timeout) || timeout <= 0) throw new UsageError('--timeout takes milliseconds');
  let client: PolicyClient | undefined;
  try {
    client = await PolicyClient.connect(server, timeout);
    const action = await client.query(attributes, timeout);
    process.stdout.write(`${action}\n`);
    return EXIT.OK;
  } catch (error) {
    if (!(error instanceof PolicyClientError)) throw error;
    process.stderr.write(`postwarden policy-query: ${error.message}\n`);
    return error.kind === 'connect' ? EXIT.UNAVAILABLE : EXIT.TEMPFAIL;
  } finally {
    client?.close();
  }
}
