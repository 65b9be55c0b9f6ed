/**
 * The learn socket: Dovecot's IMAPSieve scripts (dovecot-snippets/) `pipe` a message a user moved into Junk
 * (argument "spam") or out of it (argument "ham") to this socket, in Dovecot's script-service protocol
 * (script-socket.ts). The report joins the same learn queue as the HTTP learn API and the answer goes back at
 * once — success when queued or already queued — so the user's MOVE never waits for learning, and no process
 * is started per message.
 *
 * Failure is answered ("-", which Dovecot logs as a failed pipe) when the first argument is not spam or ham,
 * the message passed learn.max_message_bytes, or the queue is full; each is logged (PW-V003) and counted.
 */
import type { Config } from '../config/schema.js';
import type { BayesClass } from '../core/spam/bayes.js';
import type { Logger } from '../observe/logger.js';
import { createThrottledLog } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { groupId, type ScriptHandler, ScriptSocketServer } from './script-socket.js';

/** Puts a report in the learn queue (filter/learn.ts LearnQueue.submit, wired by serve). */
export type LearnSubmit = (cls: BayesClass, raw: Buffer) => 'queued' | 'duplicate' | 'full';

/** The header of a report is a few env lines and arguments; this is far more than Dovecot ever sends. */
const MAX_HEADER_BYTES = 64 * 1024;

export function learnReportHandler(submit: LearnSubmit, logger: Logger, metrics: Metrics): ScriptHandler {
  const reports = metrics.get('postwarden_learn_socket_reports_total');
  const warn = createThrottledLog(logger);
  return (request, input) => {
    const arg = request.args[0];
    const cls: BayesClass | undefined = arg === 'spam' || arg === 'ham' ? arg : undefined;
    const user = request.env.get('USER');
    const result = !cls ? 'no_class' : !input.complete ? 'too_large' : submit(cls, input.data);
    const bytes = input.complete ? input.data.length : input.bytes;
    reports.inc({ class: cls ?? 'none', result });
    const ok = result === 'queued' || result === 'duplicate';
    if (ok)
      logger.info({ event: 'learn.report', via: 'dovecot', class: cls, user, bytes, result }, 'learn report');
    else warn('PW-V003', { class: cls ?? arg ?? null, user, bytes, result }, 'learn report refused');
    return ok;
  };
}

/** Opens learn.socket for the queue; undefined when the socket is off. */
export async function openLearnSocket(
  config: Readonly<Config>,
  submit: LearnSubmit | undefined,
  logger: Logger,
  metrics: Metrics,
): Promise<ScriptSocketServer | undefined> {
  const settings = config.learn;
  if (settings.socket === '') return undefined;
  const log = logger.child({ face: 'dovecot' });
  if (!submit) {
    log.error({ code: 'PW-V004', socket: settings.socket }, 'learn.socket is set but nothing learns here');
    return undefined;
  }
  const gid = settings.socket_group === '' ? undefined : groupId(settings.socket_group);
  if (settings.socket_group !== '' && gid === undefined) {
    throw new Error(`learn.socket_group: no group ${settings.socket_group} in /etc/group`);
  }
  const server = new ScriptSocketServer(
    {
      path: settings.socket,
      mode: Number.parseInt(settings.socket_mode, 8),
      ...(gid !== undefined ? { gid } : {}),
      maxConnections: settings.max_connections,
      maxHeaderBytes: MAX_HEADER_BYTES,
      maxInputBytes: settings.max_message_bytes,
      idleTimeoutMs: settings.timeout_s * 1000,
    },
    learnReportHandler(submit, log, metrics),
    log,
    metrics,
  );
  await server.listen();
  return server;
}
