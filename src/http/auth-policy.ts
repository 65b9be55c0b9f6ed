/**
 * POST /dovecot/auth-policy?command=allow|report — Dovecot's auth-policy protocol (protocols.md A3) in front of
 * the auth guard (src/core/auth-guard.ts).
 *
 * Contract: Dovecot POSTs JSON built from auth_policy_request_attributes (`login`, `pwhash`, `remote`, …; a
 * `report` adds `success` and `policy_reject`, 2.4 also `fail_type`) with its key in `X-API-Key` (what
 * auth_policy_server_api_header sends when its value has no colon; `X-API-Key: <key>` works as well). The answer
 * is `{"status": <int>, "msg": "<text>"}`: for `allow` -1 refuse, 0 accept, > 0 tarpit seconds; a `report`'s
 * status is ignored by Dovecot and is always 0.
 *
 * Failure behaviour: the key is checked before the body is read (401 without it, compared in constant time;
 * 503 when postwarden has no key or the auth policy is off). A body that is not JSON, does not fit the schema or
 * is larger than auth_policy.max_body_bytes answers 400/413 — Dovecot then lets the login through, as it does
 * for every non-2xx answer. A store or map that cannot answer fails open: status 0, counted
 * (`result="fail_open"`) and logged as PW-G001 (at most one line per LOG_EVERY_MS, with the number left out).
 * More than auth_policy.max_in_flight requests waiting for the store are answered at once with 0 and not counted
 * (`result="shed"`), so a flood of reports cannot grow memory without bound. Metrics carry no address, login or
 * hash; the password hash is never logged.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AuthGuard, AuthPolicySettings } from '../core/auth-guard.js';
import { createThrottledLog, type Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { secretMatches } from '../util/secret.js';

export interface AuthPolicyDeps {
  readonly guard: AuthGuard;
  /** The key Dovecot must send (auth_policy.api_key_file); absent: every request answers 503. */
  readonly apiKey?: string;
  readonly settings: Pick<AuthPolicySettings, 'max_body_bytes' | 'max_in_flight'>;
}

export const AUTH_POLICY_PATH = '/dovecot/auth-policy';

/** Fail-open log lines at most this often during an outage (each request is counted in the metric). */
const LOG_EVERY_MS = 10_000;

interface Query {
  command: 'allow' | 'report';
}

/** The attributes postwarden reads; others an admin adds to auth_policy_request_attributes pass through. */
interface Body {
  login?: string;
  pwhash?: string;
  remote?: string;
  success?: boolean;
  policy_reject?: boolean;
  fail_type?: string;
}

/** Dovecot's protocol name for the log line: the client sends it, so only a short string is kept. */
function protocolOf(body: unknown): string | undefined {
  const value = (body as Record<string, unknown>)['protocol'];
  return typeof value === 'string' ? value.slice(0, 32) : undefined;
}

const schema = {
  // Dovecot's endpoint, not the admin API: left out of the API's OpenAPI document.
  hide: true,
  querystring: {
    type: 'object',
    required: ['command'],
    properties: { command: { type: 'string', enum: ['allow', 'report'] } },
  },
  body: {
    type: 'object',
    properties: {
      login: { type: 'string', maxLength: 1024 },
      pwhash: { type: 'string', maxLength: 256 },
      remote: { type: 'string', maxLength: 128 },
      success: { type: 'boolean' },
      policy_reject: { type: 'boolean' },
      fail_type: { type: 'string', maxLength: 64 },
    },
  },
} as const;

interface Answer {
  status: number;
  msg: string;
}

const ACCEPT: Answer = { status: 0, msg: '' };

export function registerAuthPolicy(
  app: FastifyInstance,
  deps: { readonly metrics: Metrics; readonly logger: Logger; readonly authPolicy?: AuthPolicyDeps },
): void {
  const requests = deps.metrics.get('postwarden_auth_policy_requests_total');
  const blocks = deps.metrics.get('postwarden_auth_policy_blocks_total');
  const latency = deps.metrics.get('postwarden_auth_policy_request_duration_seconds');
  const errors = deps.metrics.get('postwarden_errors_total');
  const logger = deps.logger.child({ face: 'http', route: AUTH_POLICY_PATH });
  const auth = deps.authPolicy;
  const commandOf = (request: FastifyRequest): string => {
    const command = (request.query as Partial<Query> | undefined)?.command;
    return command === 'allow' || command === 'report' ? command : 'unknown';
  };

  let inFlight = 0;
  const warn = createThrottledLog(logger, LOG_EVERY_MS);
  const failOpen = (command: string, error: unknown): Answer => {
    requests.inc({ command, result: 'fail_open' });
    errors.inc({ code: 'PW-G001' });
    warn(
      'PW-G001',
      { command, reason: error instanceof Error ? error.message : String(error) },
      'auth policy could not decide; answered 0 (fail-open)',
    );
    return ACCEPT;
  };

  void app.register(async (scope) => {
    scope.setErrorHandler((error: FastifyError, request, reply) => {
      const status = error.statusCode !== undefined && error.statusCode < 500 ? error.statusCode : 500;
      requests.inc({ command: commandOf(request), result: status === 413 ? 'too_large' : 'bad_request' });
      if (status >= 500) {
        errors.inc({ code: 'PW-H001' });
        logger.error({ code: 'PW-H001', err: error }, 'HTTP request failed');
      }
      void reply.status(status).send({ status: 0, msg: status >= 500 ? 'internal error' : error.message });
    });

    // Before the body is read: an unauthenticated caller gets nothing parsed.
    scope.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
      if (!auth) {
        requests.inc({ command: commandOf(request), result: 'off' });
        return reply.status(503).send({ status: 0, msg: 'the auth policy is off: set auth_policy.enabled' });
      }
      if (!auth.apiKey) {
        requests.inc({ command: commandOf(request), result: 'off' });
        return reply
          .status(503)
          .send({ status: 0, msg: 'no API key: write one to auth_policy.api_key_file' });
      }
      const given = request.headers['x-api-key'];
      if (!secretMatches(typeof given === 'string' ? given : undefined, auth.apiKey)) {
        requests.inc({ command: commandOf(request), result: 'unauthorized' });
        errors.inc({ code: 'PW-G002' });
        return reply.status(401).send({ status: 0, msg: 'a valid X-API-Key is required' });
      }
    });

    scope.post<{ Querystring: Query; Body: Body }>(
      AUTH_POLICY_PATH,
      { schema, bodyLimit: auth?.settings.max_body_bytes ?? 16_384 },
      async (request): Promise<Answer> => {
        if (!auth) return ACCEPT; // the hook answered already
        const { command } = request.query;
        const body = request.body;
        if (inFlight >= auth.settings.max_in_flight) {
          requests.inc({ command, result: 'shed' });
          return ACCEPT;
        }
        inFlight++;
        const end = latency.startTimer({ command });
        try {
          if (command === 'allow') {
            const answer = await auth.guard.allow(body.remote ?? '', body.login ?? '');
            requests.inc({ command, result: answer.outcome });
            return { status: answer.status, msg: answer.msg };
          }
          const result = await auth.guard.report({
            remote: body.remote ?? '',
            login: body.login ?? '',
            pwhash: body.pwhash ?? '',
            success: body.success === true,
            policyReject: body.policy_reject === true,
            failType: body.fail_type ?? '',
          });
          requests.inc({ command, result: result.outcome });
          for (const block of result.blocked) {
            blocks.inc({ scope: block.scope });
            logger.warn(
              {
                code: 'PW-G004',
                scope: block.scope,
                target: block.target,
                failures: block.failures,
                protocol: protocolOf(body),
              },
              'blocked for failed logins',
            );
          }
          return ACCEPT;
        } catch (error) {
          return failOpen(command, error);
        } finally {
          inFlight--;
          end();
        }
      },
    );
  });
}
