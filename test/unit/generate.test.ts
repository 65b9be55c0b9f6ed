/**
 * The generator's renderers without a live host: Postfix list parsing; the main.cf and master.cf structures
 * (policy after reject_unauth_destination, merged with what the host has and never twice; the filter only when
 * enabled; LDAP maps; end-of-data and data restrictions when limits and rate limits need them; a unix policy
 * socket; the before-queue variant); conflicts (amavisd-new, another tool's policy service); the plan that is
 * empty once the host has everything (idempotency); Dovecot 2.3 vs 2.4; systemd and Prometheus; the host
 * adapter's postconf parsing and socket table (a fake /proc). The main.cf and master.cf texts are golden files
 * in test/golden/generate/ (UPDATE_GOLDEN=1 rewrites them: read the diff).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { listeningSockets, parseMaster, parsePostconf, portConflicts } from '../../src/adapters/host.js';
import { configSchema, type Config, type ConfigInput } from '../../src/config/schema.js';
import { type HostFacts, hostFactsDefault } from '../../src/core/host-facts.js';
import { dovecotSyntax, renderDovecot } from '../../src/generate/dovecot.js';
import { planChanges, planIsEmpty } from '../../src/generate/plan.js';
import {
  KNOWN_PEERS,
  mainCfText,
  masterCfText,
  type PostfixRender,
  renderPostfix,
} from '../../src/generate/postfix.js';
import { listTokens, policyEndpoint, restrictionElements } from '../../src/generate/postfix-lists.js';
import { renderPrometheusScrape } from '../../src/generate/prometheus.js';
import { renderSystemdUnit } from '../../src/generate/systemd.js';
import { UsageError } from '../../src/cli/args.js';
import { generate, readTemplates } from '../../src/cli/generate.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const GOLDEN = path.join(ROOT, 'test/golden/generate');
const UPDATE = process.env['UPDATE_GOLDEN'] === '1';

function config(input: ConfigInput = {}): Config {
  return configSchema.parse({ local_domains: ['example.org'], ...input });
}

function facts(main: Record<string, string> = {}, extra: Partial<HostFacts> = {}): HostFacts {
  const base = hostFactsDefault('/etc/postfix');
  return { ...base, postfixVersion: '3.7.11', main: { ...base.main, ...main }, ...extra };
}

const value = (render: PostfixRender, name: string) => render.main.find((s) => s.name === name)?.value;

function golden(name: string, text: string): void {
  const file = path.join(GOLDEN, name);
  if (UPDATE) {
    mkdirSync(GOLDEN, { recursive: true });
    writeFileSync(file, text);
  }
  assert.equal(
    text,
    readFileSync(file, 'utf8'),
    `${name} differs from the golden file (UPDATE_GOLDEN=1 rewrites it)`,
  );
}

describe('Postfix lists', () => {
  test('commas, whitespace and { } groups; restrictions keep their argument', () => {
    assert.deepEqual(listTokens('a,b  c,\n    d'), ['a', 'b', 'c', 'd']);
    assert.deepEqual(
      restrictionElements(
        'permit_mynetworks,reject_unauth_destination check_policy_service {inet:127.0.0.1:10023,timeout=5s}, reject_rbl_client zen.example',
      ),
      [
        'permit_mynetworks',
        'reject_unauth_destination',
        'check_policy_service { inet:127.0.0.1:10023, timeout=5s }',
        'reject_rbl_client zen.example',
      ],
    );
    assert.equal(
      policyEndpoint('check_policy_service { inet:127.0.0.1:10023, timeout=5s }'),
      'inet:127.0.0.1:10023',
    );
    assert.equal(policyEndpoint('check_policy_service unix:private/policyd'), 'unix:private/policyd');
    assert.equal(policyEndpoint('permit_mynetworks'), undefined);
  });
});

describe('renderPostfix', () => {
  test('defaults: the named policy service in the recipient list, Debian relay control kept, no filter', () => {
    const r = renderPostfix(config(), facts());
    assert.equal(
      value(r, 'postwarden_policy'),
      'check_policy_service { inet:127.0.0.1:10060, timeout=10s, default_action=DUNNO }',
    );
    assert.equal(
      value(r, 'smtpd_relay_restrictions'),
      'permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination',
    );
    assert.equal(value(r, 'smtpd_recipient_restrictions'), '$postwarden_policy');
    assert.equal(
      value(r, 'smtpd_end_of_data_restrictions'),
      '$postwarden_policy',
      'policy.limits is on by default',
    );
    assert.equal(value(r, 'smtpd_data_restrictions'), undefined, 'no rate limit configured');
    assert.equal(value(r, 'content_filter'), undefined);
    assert.deepEqual(r.master, []);
    assert.deepEqual(r.conflicts, []);
  });

  test('merging: the host keeps its elements; the policy goes right after reject_unauth_destination; never twice', () => {
    const host = facts({
      smtpd_relay_restrictions: '',
      smtpd_recipient_restrictions:
        'permit_mynetworks, reject_unauth_destination, check_recipient_access hash:/etc/postfix/access, permit',
    });
    const r = renderPostfix(config(), host);
    assert.equal(value(r, 'smtpd_relay_restrictions'), '', 'relay control stays in the recipient list');
    assert.deepEqual(r.main.find((s) => s.name === 'smtpd_recipient_restrictions')?.elements, [
      'permit_mynetworks',
      'reject_unauth_destination',
      '$postwarden_policy',
      'check_recipient_access hash:/etc/postfix/access',
      'permit',
    ]);
    assert.match(
      r.notes.join('\n'),
      /\(permit_\*\) before reject_unauth_destination: postwarden never sees their mail/,
    );
    // A direct reference to postwarden's endpoint becomes the named one, in place.
    const again = renderPostfix(
      config(),
      facts({
        smtpd_recipient_restrictions: 'check_policy_service inet:127.0.0.1:10060, reject_unlisted_recipient',
      }),
    );
    assert.equal(
      value(again, 'smtpd_recipient_restrictions'),
      '$postwarden_policy, reject_unlisted_recipient',
    );
    // No relay control anywhere: Postfix's own is added.
    const open = renderPostfix(config(), facts({ smtpd_relay_restrictions: 'permit_mynetworks' }));
    assert.equal(value(open, 'smtpd_relay_restrictions'), 'permit_mynetworks, reject_unauth_destination');
  });

  test('filter.enabled: content_filter, receive_override_options merged, the scan transport and the re-injection smtpd', () => {
    const r = renderPostfix(
      config({ filter: { enabled: true, message_timeout_ms: 1_200_000 } }),
      facts({ receive_override_options: 'no_header_body_checks' }),
    );
    assert.equal(value(r, 'content_filter'), 'scan:[127.0.0.1]:10061');
    assert.equal(value(r, 'receive_override_options'), 'no_header_body_checks,no_address_mappings');
    const [scan, reinject] = r.master;
    assert.equal(`${scan?.service}/${scan?.type} ${scan?.command} ${scan?.maxproc}`, 'scan/unix smtp 10');
    assert.deepEqual(
      scan?.options.filter(([n]) => /xforward|mime|done/.test(n)),
      [
        ['smtp_send_xforward_command', 'yes'],
        ['disable_mime_output_conversion', 'yes'],
        ['smtp_data_done_timeout', '1500s'],
      ],
      'the data-done timeout outlasts filter.message_timeout_ms',
    );
    assert.equal(`${reinject?.service}/${reinject?.type} ${reinject?.command}`, '127.0.0.1:10062/inet smtpd');
    assert.deepEqual(
      reinject?.options.find(([n]) => n === 'content_filter'),
      ['content_filter', ''],
    );
  });

  test('before_queue: no content_filter; smtpd_proxy_filter on the public smtpd, not on submission', () => {
    const smtpd = {
      private: 'n',
      unpriv: '-',
      chroot: 'y',
      wakeup: '-',
      maxproc: '-',
      command: 'smtpd',
      options: [],
    };
    const r = renderPostfix(
      config({ filter: { enabled: true, mode: 'before_queue' } }),
      facts(
        {},
        {
          master: [
            { service: 'smtp', type: 'inet', ...smtpd },
            { service: 'submission', type: 'inet', ...smtpd },
          ],
        },
      ),
    );
    assert.equal(value(r, 'content_filter'), undefined);
    assert.deepEqual(
      r.overrides.map((o) => `${o.service}/${o.type}/${o.name}=${o.value}`),
      ['smtp/inet/smtpd_proxy_filter=127.0.0.1:10061', 'smtp/inet/smtpd_proxy_timeout=330s'],
    );
    assert.deepEqual(
      r.master.map((s) => s.service),
      ['127.0.0.1:10062'],
    );
  });

  test('conflicts: amavisd-new as content_filter, postgrey as a policy service', () => {
    const r = renderPostfix(
      config({ filter: { enabled: true } }),
      facts({
        content_filter: 'amavis:[127.0.0.1]:10024',
        smtpd_recipient_restrictions: 'reject_unauth_destination, check_policy_service inet:127.0.0.1:10023',
      }),
    );
    assert.deepEqual(
      r.conflicts.map((c) => c.what),
      [
        'smtpd_recipient_restrictions already asks another policy service, inet:127.0.0.1:10023 (postgrey)',
        'content_filter is already set: amavis:[127.0.0.1]:10024 (amavisd-new)',
      ],
    );
  });

  test('a unix policy socket in the queue directory is named relative to it; on_error defer is fail-closed', () => {
    const r = renderPostfix(
      config({
        policy: { listen: 'unix:/var/spool/postfix/postwarden/policy', on_error: 'defer_if_permit' },
      }),
      facts(),
    );
    assert.equal(
      value(r, 'postwarden_policy'),
      'check_policy_service { unix:postwarden/policy, timeout=10s, default_action=DEFER_IF_PERMIT }',
    );
  });

  test('LDAP: sender login maps and the aliases, as Postfix ldap: tables in config_directory; rate limits ask at DATA', () => {
    const r = renderPostfix(
      config({
        ldap: {
          url: 'ldap://127.0.0.1:3389',
          base: 'dc=example,dc=test',
          queries: {
            senders: { filter: '(mail=%s)', result_attribute: 'uid' },
            aliases: { filter: '(mailLocalAddress=%s)', result_attribute: 'mailRoutingAddress' },
          },
        },
        policy: {
          sender_ownership: { map: 'ldap:senders' },
          recipients: { mode: 'enforce', map: 'ldap:aliases', aliases: 'ldap:aliases' },
          ratelimit: { per_sasl_user: '200/1h' },
        },
      }),
      facts({ virtual_alias_maps: 'hash:/etc/postfix/virtual' }),
    );
    assert.equal(value(r, 'smtpd_sender_login_maps'), 'ldap:/etc/postfix/ldap-senders.cf');
    assert.equal(
      value(r, 'virtual_alias_maps'),
      'hash:/etc/postfix/virtual, ldap:/etc/postfix/ldap-aliases.cf',
    );
    assert.equal(value(r, 'smtpd_data_restrictions'), '$postwarden_policy');
  });

  test('golden: main.cf.postwarden and master.cf.postwarden (filter on, TLS, a host with its own lists)', () => {
    const r = renderPostfix(
      config({ filter: { enabled: true }, policy: { ratelimit: { per_client: '100/1m' } } }),
      facts({
        smtpd_tls_security_level: 'may',
        smtpd_relay_restrictions: 'permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination',
        smtpd_recipient_restrictions: 'reject_non_fqdn_recipient, reject_unknown_recipient_domain',
      }),
    );
    golden('main.cf.postwarden', mainCfText(r, '/etc/postwarden/postwarden.yml'));
    golden('master.cf.postwarden', masterCfText(r, '/etc/postwarden/postwarden.yml'));
  });
});

describe('plan', () => {
  test('a host that has everything gets an empty plan; one that lacks an -o gets only that', () => {
    const cfg = config({ filter: { enabled: true } });
    const r = renderPostfix(cfg, facts());
    const main = Object.fromEntries(r.main.map((s) => [s.name, s.elements?.join(',  ') ?? s.value]));
    const applied = facts(main, { master: r.master });
    assert.ok(planIsEmpty(planChanges(renderPostfix(cfg, applied), applied, [])));
    const [scan, reinject] = r.master;
    assert.ok(scan && reinject);
    const partial = facts(main, { master: [scan, { ...reinject, options: reinject.options.slice(1) }] });
    const plan = planChanges(renderPostfix(cfg, partial), partial, []);
    assert.deepEqual(plan.main, []);
    assert.deepEqual(
      plan.master.map((c) => [c.service.service, c.columns, c.options.map(([n]) => n)]),
      [['127.0.0.1:10062', false, ['syslog_name']]],
    );
    const files = [{ path: '/x', text: 'a', mode: 0o644, current: 'a' }];
    assert.deepEqual(planChanges(r, applied, files).files, []);
    assert.equal(planChanges(r, applied, [{ ...files[0]!, current: undefined }]).files[0]?.exists, false);
  });
});

describe('Dovecot', () => {
  const templates = readTemplates();
  test('the version picks the syntax', () => {
    assert.equal(dovecotSyntax('2.3.19.1 (9b53102964)'), '2.3');
    assert.equal(dovecotSyntax('2.4.1-4 (7d8c0e5759)'), '2.4');
    assert.equal(dovecotSyntax('3.0.0'), '2.4');
    assert.equal(dovecotSyntax(''), '2.3');
  });

  test('2.3 and 2.4: the host paths, the learn socket and the auth policy filled in', () => {
    const cfg = config({
      learn: { socket: '/run/pw/learner' },
      auth_policy: { enabled: true },
      http: { listen: '127.0.0.1:20063' },
    });
    const opts = { dovecotDir: '/srv/dovecot', apiKey: 'k'.repeat(24) };
    const v23 = renderDovecot(cfg, '2.3', templates, opts);
    assert.match(v23.conf, /^ {2}sieve_before = \/srv\/dovecot\/sieve\/postwarden-junk\.sieve$/m);
    assert.match(v23.conf, /^ {2}sieve_pipe_socket_dir = \.\.\/pw$/m);
    assert.match(v23.conf, /^auth_policy_server_url = http:\/\/127\.0\.0\.1:20063\/dovecot\/auth-policy$/m);
    assert.match(v23.conf, /^auth_policy_server_api_header = X-API-Key: k{24}$/m);
    assert.match(v23.conf, /^auth_policy_request_attributes = login=/m);
    const nonce = /^auth_policy_hash_nonce = (\S+)$/m.exec(v23.conf)?.[1];
    assert.match(nonce ?? '', /^[A-Za-z0-9_-]{32}$/);
    assert.equal(renderDovecot(cfg, '2.3', templates, opts).conf, v23.conf, 'the same every run');
    assert.match(
      v23.sieve.find((s) => s.name === 'sieve/postwarden-report-spam.sieve')?.text ?? '',
      /pipe :copy "learner" \["spam"\];/,
    );
    const v24 = renderDovecot(cfg, '2.4', templates, opts);
    assert.match(
      v24.conf,
      /^sieve_script postwarden-junk \{\n {2}type = before\n {2}path = \/srv\/dovecot\/sieve\/postwarden-junk\.sieve$/m,
    );
    assert.match(v24.conf, /^auth_policy_request_attributes \{$/m);
    assert.doesNotMatch(v24.conf, /^plugin \{/m);
    const noKey = renderDovecot(cfg, '2.4', templates, { dovecotDir: '/etc/dovecot', apiKey: undefined });
    assert.match(noKey.notes.join('\n'), /cannot be read: replace REPLACE-WITH-THE-KEY/);
  });
});

test('systemd unit and Prometheus scrape job from deploy/', () => {
  const templates = readTemplates();
  const cfg = config({
    policy: { listen: ['127.0.0.1:10060', 'unix:/var/spool/postfix/postwarden/policy'] },
    learn: { socket_group: 'vmail' },
    http: { listen: '0.0.0.0:20063' },
  });
  const unit = renderSystemdUnit(cfg, templates['postwarden.service'] ?? '', '/srv/pw.yml');
  assert.match(unit, /^ExecStart=.* serve --config \/srv\/pw\.yml$/m);
  assert.match(unit, /^ReadWritePaths=\/var\/spool\/postfix\/postwarden$/m);
  assert.match(unit, /^SupplementaryGroups=vmail$/m);
  assert.match(
    renderPrometheusScrape(cfg, templates['scrape.yml'] ?? ''),
    /targets: \['127\.0\.0\.1:20063'\]/,
  );
});

test('generate --apply is a usage error that names setup --apply (ADR 0008): generate never touches live files', async () => {
  await assert.rejects(
    generate(['postfix', '--apply']),
    (error: unknown) => error instanceof UsageError && /postwarden setup --apply/.test(error.message),
  );
});

describe('host adapter', () => {
  test('postconf output and postconf -M lines', () => {
    assert.deepEqual(parsePostconf('a = 1\nb =\nc = x, y\npostconf: warning: z: unknown parameter\n'), {
      a: '1',
      b: '',
      c: 'x, y',
    });
    const [entry] = parseMaster(
      '127.0.0.1:10062 inet n   -       n       -       20      smtpd -o syslog_name=postfix/reinject -o content_filter=\n',
    );
    assert.deepEqual(entry, {
      service: '127.0.0.1:10062',
      type: 'inet',
      private: 'n',
      unpriv: '-',
      chroot: 'n',
      wakeup: '-',
      maxproc: '20',
      command: 'smtpd',
      options: [
        ['syslog_name', 'postfix/reinject'],
        ['content_filter', ''],
      ],
    });
  });

  test('listening sockets from /proc with their processes; a known neighbour is named', () => {
    const proc = mkdtempSync(path.join(os.tmpdir(), 'pw-su-proc-'));
    mkdirSync(path.join(proc, 'net'));
    mkdirSync(path.join(proc, '4242', 'fd'), { recursive: true });
    const header =
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
    // 127.0.0.1:10024 listening (0A), and an established socket that must be ignored (01).
    writeFileSync(
      path.join(proc, 'net', 'tcp'),
      `${header}   0: 0100007F:2728 00000000:0000 0A 00000000:00000000 00:00000000 00000000   0        0 777 1\n` +
        `   1: 0100007F:2728 0100007F:C350 01 00000000:00000000 00:00000000 00000000   0        0 778 1\n`,
    );
    writeFileSync(
      path.join(proc, 'net', 'tcp6'),
      `${header}   0: 00000000000000000000000001000000:2775 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 779 1\n`,
    );
    symlinkSync('socket:[777]', path.join(proc, '4242', 'fd', '5'));
    writeFileSync(path.join(proc, '4242', 'comm'), 'amavisd\n');
    writeFileSync(path.join(proc, '4242', 'cmdline'), '/usr/sbin/amavisd-new\0foreground\0');
    const sockets = listeningSockets(proc);
    assert.deepEqual(
      sockets.map((s) => [s.host, s.port, s.holders.map((h) => h.program)]),
      [
        ['127.0.0.1', 10024, ['amavisd']],
        ['::1', 10101, []],
      ],
    );
    const conflicts = portConflicts(
      [
        { key: 'filter.listen', host: '127.0.0.1', port: 10024, owner: 'postwarden' },
        { key: 'policy.listen', host: '127.0.0.1', port: 10060, owner: 'postwarden' },
      ],
      sockets,
      KNOWN_PEERS,
    );
    assert.deepEqual(
      conflicts.map((c) => c.what),
      [
        'filter.listen 127.0.0.1:10024 is taken by amavisd (pid 4242); the usual owner of that port is amavisd-new',
      ],
    );
    rmSync(proc, { recursive: true, force: true });
  });
});
