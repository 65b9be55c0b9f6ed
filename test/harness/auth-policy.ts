/**
 * The auth-policy tests' postwarden config and Dovecot fragment (Dovecot 2.3 and 2.4): the shipped
 * dovecot-snippets/auth-policy-<version>.conf with the test's URL, key and nonce filled in.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const AUTH_POLICY_KEY = 'it-key-0123456789abcdef';

/** postwarden.yml for an auth-policy test: the key in `auth-policy.key` of the work dir, the other checks off. */
export function authPolicyConfig(options: {
  readonly policy: string;
  readonly http: string;
  readonly blockS: number;
  readonly addressBlockAfter: number;
}): string {
  return `local_domains: [example.test]
store: { driver: sqlite, path: state.db }
policy:
  listen: ${options.policy}
  greylist: { mode: off }
  spf: { mode: off }
  dns_sanity: { mode: off }
http:
  listen: ${options.http}
  token_file: admin.token
auth_policy:
  enabled: true
  api_key_file: auth-policy.key
  auth_block_s: ${options.blockS}
  login_block_after: 4
  address_block_after: ${options.addressBlockAfter}
  network_block_after: 1000
  tarpit_after: 0
`;
}

/** The shipped fragment for `version`, asking postwarden at `http` with the test's key. */
export function authPolicyFragment(version: '2.3' | '2.4', http: string): string {
  const fragment = readFileSync(path.join(ROOT, `dovecot-snippets/auth-policy-${version}.conf`), 'utf8')
    .replace('http://127.0.0.1:10063/', `http://${http}/`)
    .replace('REPLACE-WITH-THE-KEY', AUTH_POLICY_KEY)
    .replace('REPLACE-WITH-A-RANDOM-STRING', 'it-nonce');
  assert.ok(
    fragment.includes(AUTH_POLICY_KEY) && fragment.includes(http),
    'the fragment took the URL and key',
  );
  return fragment;
}
