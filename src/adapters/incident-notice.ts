/**
 * The admin notice of a rate-limit incident: a short plain-text mail, sent with nodemailer to the configured SMTP
 * server (the local Postfix, or a relay) with the null envelope sender (it must never bounce into a loop) and
 * `Auto-Submitted: auto-generated`.
 *
 * Contract: `incidentOpened` returns at once; the policy reply never waits for a notice. Each notice is tried up
 * to `attempts` times, backing off (5 s, 30 s, 2 min, 5 min, then every 10 min); its fate is written to the
 * incident (`notice: sent | failed`, for the API) and reported through `onOutcome` (metrics, log). At most
 * MAX_PENDING notices wait at once; one more is dropped and reported, never queued without bound.
 *
 * Failure behaviour: a failed attempt (connection refused, timeout, a 4xx/5xx reply) is reported as `retry`, the
 * last one as `failed`; a store error while recording the outcome is ignored (the notice itself went out or not).
 */
import nodemailer, { type Transporter } from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport';
import { markNotice, type Incident, type RateLimitAlerts } from '../core/ratelimit-incidents.js';
import type { Store } from '../core/store.js';

export interface IncidentNoticeSettings {
  /** Who is told. */
  readonly to: string;
  /** The From: address. */
  readonly from: string;
  /** host:port of the SMTP server. */
  readonly smtp: string;
  readonly timeoutMs: number;
  readonly attempts: number;
  /** This host's name: EHLO and the text. */
  readonly hostname: string;
}

export type NoticeOutcome = 'sent' | 'retry' | 'failed' | 'dropped';

export const MAX_PENDING = 100;
const BACKOFF_MS = [5_000, 30_000, 120_000, 300_000, 600_000];

export function noticeText(incident: Incident, hostname: string): { subject: string; text: string } {
  const opened = new Date(incident.openedAt).toISOString();
  return {
    subject: `Rate limit: mail of ${incident.user} is being held`,
    text: [
      `The SASL user ${incident.user} went over a rate limit on ${hostname}: ${incident.limit}.`,
      'A stolen password is the usual cause. Its mail is being held in the Postfix hold queue.',
      '',
      `  User:          ${incident.user}`,
      `  Since:         ${opened}`,
      `  Limit:         ${incident.limit}`,
      `  Client:        ${incident.client || '(unknown)'}`,
      `  Sender:        ${incident.sender || '<>'}`,
      `  First held:    ${incident.queueId || '(no queue id)'}`,
      '',
      'What to do, through the admin API (Authorization: Bearer <http.token_file>):',
      '  GET  /api/v1/ratelimit/users                 incidents and held mail',
      `  POST /api/v1/ratelimit/users/${encodeURIComponent(incident.user)}/delete   drop the held mail (spam)`,
      `  POST /api/v1/ratelimit/users/${encodeURIComponent(incident.user)}/release  deliver the held mail`,
      `  POST /api/v1/ratelimit/users/${encodeURIComponent(incident.user)}/reset    end the incident`,
      '',
      'Change the password before the reset if the account was stolen.',
      'This notice is sent once per incident.',
      '',
    ].join('\n'),
  };
}

function hostPort(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  return { host: address.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(address.slice(colon + 1)) };
}

export class IncidentNotifier implements RateLimitAlerts {
  private readonly pending = new Set<NodeJS.Timeout>();
  private inFlight = 0;
  private closed = false;
  private readonly transport: Transporter<SMTPTransport.SentMessageInfo>;

  constructor(
    private readonly settings: IncidentNoticeSettings,
    private readonly store: Store,
    private readonly onOutcome: (incident: Incident, outcome: NoticeOutcome, reason?: string) => void,
  ) {
    const { host, port } = hostPort(settings.smtp);
    this.transport = nodemailer.createTransport({
      host,
      port,
      secure: false,
      ignoreTLS: true,
      name: settings.hostname,
      connectionTimeout: settings.timeoutMs,
      greetingTimeout: settings.timeoutMs,
      socketTimeout: settings.timeoutMs,
    });
  }

  incidentOpened(incident: Incident): void {
    if (this.closed) return;
    if (this.pending.size + this.inFlight >= MAX_PENDING) {
      this.onOutcome(incident, 'dropped', `${MAX_PENDING} notices are already waiting`);
      return;
    }
    this.schedule(incident, 1, 0);
  }

  /** Stops retrying; a notice being sent finishes. */
  close(): void {
    this.closed = true;
    for (const timer of this.pending) clearTimeout(timer);
    this.pending.clear();
    this.transport.close();
  }

  private schedule(incident: Incident, attempt: number, delayMs: number): void {
    const timer = setTimeout(() => {
      this.pending.delete(timer);
      void this.attempt(incident, attempt);
    }, delayMs);
    timer.unref();
    this.pending.add(timer);
  }

  private async attempt(incident: Incident, attempt: number): Promise<void> {
    if (this.closed) return;
    const { subject, text } = noticeText(incident, this.settings.hostname);
    this.inFlight += 1;
    try {
      await this.transport.sendMail({
        envelope: { from: '', to: [this.settings.to] },
        from: this.settings.from,
        to: this.settings.to,
        subject,
        text,
        headers: { 'Auto-Submitted': 'auto-generated', 'X-Postwarden-Incident': incident.user },
      });
      await markNotice(this.store, incident, 'sent').catch(() => undefined);
      this.onOutcome(incident, 'sent');
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      if (attempt >= this.settings.attempts || this.closed) {
        await markNotice(this.store, incident, 'failed').catch(() => undefined);
        this.onOutcome(incident, 'failed', reason);
      } else {
        this.onOutcome(incident, 'retry', reason);
        const delay = BACKOFF_MS[Math.min(attempt - 1, BACKOFF_MS.length - 1)] ?? 600_000;
        this.schedule(incident, attempt + 1, delay);
      }
    } finally {
      this.inFlight -= 1;
    }
  }
}
