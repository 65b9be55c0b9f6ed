/**
 * The quarantine page (`/quarantine/`): server-rendered HTML, no script, two ways in.
 *
 * - The admin logs in with the admin token (http.token_file) and gets a session cookie (session.ts): a list of
 *   held messages (reason, sender, recipients, subject, size, age), 500 a page, newest first (`?cursor=` for the
 *   older ones), each message's header section (bounded), and forms to release or delete it. Every form carries a
 *   CSRF token, and every POST must come from this origin (Origin and Sec-Fetch-Site, when the browser sends
 *   them).
 * - A recipient follows the signed link of a notice (src/core/release-link.ts) to a confirmation page; GET never
 *   changes anything (mail scanners open links), the form's POST releases that message for that recipient only,
 *   and only when the recipient may release it (`releasableBy: 'recipient'`: spam, a banned file; never a virus
 *   or a loop). Forged, expired, tampered and wrong-recipient links, a message already released or gone, and an
 *   id that is not one all get a page saying so, with a 4xx status.
 *
 * Every answer carries a strict content-security policy (no script at all; the style sheet from this origin),
 * nosniff, no referrer, no framing, no caching. Quarantine ids are checked against their pattern before any file
 * is touched. A failing release (re-injection smtpd down) answers 503 and changes nothing.
 */
import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { QUARANTINE_CURSOR } from '../../core/quarantine.js';
import { type LinkClaims, verifyLink } from '../../core/release-link.js';
import type { Logger } from '../../observe/logger.js';
import type { Metrics } from '../../observe/metrics.js';
import { age, type Html, html, page, size, STYLE_SHEET } from './html.js';
import { same, SESSION_COOKIE, SESSION_S, Sessions } from './session.js';

/** A held message, as the page shows it (the quarantine's entry, src/filter/quarantine.ts). */
export interface HeldMessage {
  readonly id: string;
  readonly time: number;
  readonly symbol: string;
  readonly reason: string;
  readonly releasableBy: 'admin' | 'recipient';
  readonly sender: string;
  readonly recipients: readonly string[];
  readonly size: number;
  readonly subject?: string;
  readonly released?: readonly string[];
}

export type Release =
  | { readonly kind: 'released'; readonly recipients: readonly string[]; readonly removed: boolean }
  | { readonly kind: 'gone' | 'already' | 'busy' }
  | { readonly kind: 'unavailable'; readonly reason: string };

/** One page of held messages, newest first. */
export interface HeldPage {
  readonly items: readonly HeldMessage[];
  /** How many are held, in all pages. */
  readonly total: number;
  /** The cursor of the next (older) page; absent on the last. */
  readonly next?: string;
}

/** The quarantine, as the page needs it (serve wires src/filter/quarantine.ts in). */
export interface HeldMessages {
  /** At most `limit`, newest first, after `cursor` (a page's `next`) when given. */
  list(options: { readonly limit: number; readonly cursor?: string }): HeldPage;
  entry(id: string): HeldMessage | undefined;
  header(id: string, maxBytes: number): Promise<{ text: string; truncated: boolean }>;
  release(
    id: string,
    by: { readonly kind: 'admin' } | { readonly kind: 'recipient'; readonly address: string },
  ): Promise<Release>;
  remove(id: string): Promise<void>;
}

export interface QuarantinePageOptions {
  readonly held: HeldMessages;
  /** The path prefix the page is reached under from outside ('' or e.g. '/postwarden', from http.public_url). */
  readonly basePath: string;
  /** The origin from outside (from http.public_url), checked against a POST's Origin; absent: this request's. */
  readonly publicOrigin?: string;
  /** Cookies only over HTTPS (http.public_url is https). */
  readonly secureCookies: boolean;
  /** The key of release links; absent: links are off. */
  readonly linkSecret?: Buffer;
}

export interface QuarantinePageDeps extends QuarantinePageOptions {
  /** The admin token; absent: admin login is off. */
  readonly adminToken?: string;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

/** Most entries one page of the list shows (newest first); `?cursor=` pages on to older ones. */
const LIST_MAX = 500;
/** Most bytes of a message read to show its header section. */
const HEADER_MAX_BYTES = 64 * 1024;
const ID = /^[0-9]{8}-[0-9a-f]{16}$/;

const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'cache-control': 'no-store',
};

type Body = Record<string, unknown>;

function field(body: unknown, name: string): string | undefined {
  const value = (body as Body | undefined)?.[name];
  return typeof value === 'string' ? value : undefined;
}

export async function quarantinePage(app: FastifyInstance, deps: QuarantinePageDeps): Promise<void> {
  const base = deps.basePath;
  const home = `${base}/quarantine/`;
  const sessions = deps.adminToken ? new Sessions(deps.adminToken) : undefined;
  const errors = deps.metrics.get('postwarden_errors_total');
  const log = deps.logger.child({ face: 'http', part: 'quarantine-page' });

  await app.register(cookie);
  await app.register(formbody, { bodyLimit: 16 * 1024 });

  app.addHook('onSend', async (_request, reply) => {
    reply.headers(SECURITY_HEADERS);
  });

  const send = (reply: FastifyReply, status: number, title: string, body: Html) =>
    reply
      .status(status)
      .type('text/html; charset=utf-8')
      .send(page(base, title, body));

  const problem = (reply: FastifyReply, status: number, title: string, text: string | Html) =>
    send(
      reply,
      status,
      title,
      html`<h1>${title}</h1>
        <p class="problem">${text}</p>`,
    );

  /**
   * A POST from a page of this site: refused when the browser says it came from elsewhere. Sec-Fetch-Site, set by
   * the browser and beyond a page's reach, decides when present. Origin is the fallback for browsers without it;
   * `null` tells nothing (browsers send it for our own forms because of `Referrer-Policy: no-referrer`). With
   * neither, the CSRF token (admin forms) or the link's signature (release links) is the protection.
   */
  function sameOrigin(request: FastifyRequest): boolean {
    const site = request.headers['sec-fetch-site'];
    if (site !== undefined) return site === 'same-origin';
    const origin = request.headers.origin;
    if (origin === undefined || origin === 'null') return true;
    return origin === (deps.publicOrigin ?? `${request.protocol}://${request.host}`);
  }

  function refuseCrossSite(request: FastifyRequest, reply: FastifyReply) {
    errors.inc({ code: 'PW-H022' });
    log.warn(
      { code: 'PW-H022', url: request.url, origin: request.headers.origin ?? null },
      'quarantine page: a form post from another site was refused',
    );
    return problem(
      reply,
      403,
      'Refused',
      'This form was sent from another site. Open the page again and retry.',
    );
  }

  /** The session value when the request carries a valid one. */
  function session(request: FastifyRequest): string | undefined {
    const value = request.cookies[SESSION_COOKIE];
    return sessions && value !== undefined && sessions.valid(value) ? value : undefined;
  }

  const cookieOptions = {
    path: `${base}/quarantine`,
    httpOnly: true,
    sameSite: 'strict' as const,
    secure: deps.secureCookies,
  };

  app.get('/quarantine/style.css', async (_request, reply) =>
    reply.type('text/css; charset=utf-8').send(STYLE_SHEET),
  );

  // ---- admin ------------------------------------------------------------------------------------------------

  const loginForm = (reply: FastifyReply, status: number, note?: string) =>
    send(
      reply,
      status,
      'Quarantine: log in',
      html`<h1>Quarantine</h1>
        ${note ? html`<p class="problem">${note}</p>` : ''}
        <form method="post" action="${base}/quarantine/login">
          <p>
            <label
              >Admin token<br /><input type="password" name="token" autocomplete="current-password" required
            /></label>
          </p>
          <p><button class="primary" type="submit">Log in</button></p>
        </form>`,
    );

  const adminOff = (reply: FastifyReply) =>
    problem(
      reply,
      503,
      'Admin access is off',
      'Write a token of 32 or more characters to http.token_file and restart postwarden.',
    );

  /** The session of an admin request, or undefined after answering (login page, 503). */
  function admin(request: FastifyRequest, reply: FastifyReply): string | undefined {
    if (!sessions) {
      void adminOff(reply);
      return undefined;
    }
    const value = session(request);
    if (!value) void loginForm(reply, 401);
    return value;
  }

  /** The session of an admin form post with a valid CSRF token from this origin, or undefined after answering. */
  function adminPost(request: FastifyRequest, reply: FastifyReply): string | undefined {
    if (!sameOrigin(request)) {
      void refuseCrossSite(request, reply);
      return undefined;
    }
    const value = admin(request, reply);
    if (value && !sessions?.csrfValid(value, field(request.body, 'csrf'))) {
      void refuseCrossSite(request, reply);
      return undefined;
    }
    return value;
  }

  app.get('/quarantine/', async (request, reply) => {
    const value = admin(request, reply);
    if (!value || !sessions) return reply;
    const query = request.query as Record<string, unknown>;
    const cursor = typeof query['cursor'] === 'string' ? query['cursor'] : undefined;
    // A cursor that is not one (edited by hand) shows the newest page.
    const older = cursor !== undefined && QUARANTINE_CURSOR.test(cursor) ? cursor : undefined;
    const listed = deps.held.list({ limit: LIST_MAX, ...(older === undefined ? {} : { cursor: older }) });
    const shown = listed.items;
    const count =
      older !== undefined
        ? `${listed.total} held, ${shown.length} older ones shown.`
        : listed.next !== undefined
          ? `${listed.total} held, the newest ${shown.length} shown.`
          : `${listed.total} held.`;
    const now = Date.now();
    const done = typeof query['done'] === 'string' ? query['done'] : '';
    const notes: Record<string, string> = {
      released: 'Released.',
      deleted: 'Deleted.',
    };
    const rows = shown.map(
      (m) =>
        html`<tr>
          <td><a href="${base}/quarantine/m/${m.id}">${m.subject ?? '(no subject)'}</a></td>
          <td>${m.symbol}<br /><span class="muted">${m.reason}</span></td>
          <td>${m.sender || '<>'}</td>
          <td>${m.recipients.join(', ')}</td>
          <td class="nowrap">${size(m.size)}</td>
          <td class="nowrap" title="${new Date(m.time).toISOString()}">${age(m.time, now)}</td>
        </tr>`,
    );
    return send(
      reply,
      200,
      'Quarantine',
      html`<nav>
          <h1>Quarantine</h1>
          <form class="inline" method="post" action="${base}/quarantine/logout">
            <input type="hidden" name="csrf" value="${sessions.csrf(value)}" /><button type="submit">
              Log out
            </button>
          </form>
        </nav>
        ${notes[done] ? html`<p class="note">${notes[done]}</p>` : ''}
        <p class="muted">${count}</p>
        ${
          older !== undefined || listed.next !== undefined
            ? html`<p>
                ${older !== undefined ? html`<a href="${home}">Newest</a>` : ''}
                ${listed.next !== undefined ? html`<a href="${home}?cursor=${listed.next}">Older</a>` : ''}
              </p>`
            : ''
        }
        <table>
          <thead>
            <tr>
              <th>Subject</th>
              <th>Reason</th>
              <th>Sender</th>
              <th>Recipients</th>
              <th>Size</th>
              <th>Age</th>
            </tr>
          </thead>
          <tbody>
            ${rows}
          </tbody>
        </table>`,
    );
  });

  app.post('/quarantine/login', async (request, reply) => {
    if (!sessions || !deps.adminToken) return adminOff(reply);
    if (!sameOrigin(request)) return refuseCrossSite(request, reply);
    const given = field(request.body, 'token') ?? '';
    if (!same(given.trim(), deps.adminToken)) {
      errors.inc({ code: 'PW-H023' });
      log.warn({ code: 'PW-H023', remote: request.ip }, 'quarantine page: a login with a wrong token');
      return loginForm(reply, 401, 'That is not the admin token.');
    }
    return reply
      .setCookie(SESSION_COOKIE, sessions.issue(), { ...cookieOptions, maxAge: SESSION_S })
      .redirect(home, 303);
  });

  app.post('/quarantine/logout', async (request, reply) => {
    if (!adminPost(request, reply)) return reply;
    return reply.clearCookie(SESSION_COOKIE, cookieOptions).redirect(home, 303);
  });

  app.get<{ Params: { id: string } }>('/quarantine/m/:id', async (request, reply) => {
    const value = admin(request, reply);
    if (!value || !sessions) return reply;
    const entry = ID.test(request.params.id) ? deps.held.entry(request.params.id) : undefined;
    if (!entry) return gone(reply);
    const header = await deps.held.header(entry.id, HEADER_MAX_BYTES);
    const csrf = sessions.csrf(value);
    const waiting = entry.recipients.filter((r) => !(entry.released ?? []).includes(r));
    return send(
      reply,
      200,
      `Held: ${entry.subject ?? entry.id}`,
      html`<nav><h1>Held message</h1><a href="${home}">All held messages</a></nav>
${details(entry)}
<p>
<form class="inline" method="post" action="${base}/quarantine/m/${entry.id}/release"><input type="hidden" name="csrf" value="${csrf}"><button class="primary" type="submit">Release to ${waiting.join(', ')}</button></form>
<form class="inline" method="post" action="${base}/quarantine/m/${entry.id}/delete"><input type="hidden" name="csrf" value="${csrf}"><button class="danger" type="submit">Delete</button></form>
</p>
<h2>Header</h2>
<pre>${header.text}</pre>
${header.truncated ? html`<p class="muted">Only the first ${size(HEADER_MAX_BYTES)} are shown.</p>` : ''}`,
    );
  });

  app.post<{ Params: { id: string } }>('/quarantine/m/:id/release', async (request, reply) => {
    if (!adminPost(request, reply)) return reply;
    const id = request.params.id;
    if (!ID.test(id) || !deps.held.entry(id)) return gone(reply);
    const result = await deps.held.release(id, { kind: 'admin' });
    log.info(
      { event: 'quarantine.release', id, by: 'admin', result: result.kind },
      'quarantine page release',
    );
    if (result.kind === 'released') return reply.redirect(`${home}?done=released`, 303);
    return releaseFailed(reply, result);
  });

  app.post<{ Params: { id: string } }>('/quarantine/m/:id/delete', async (request, reply) => {
    if (!adminPost(request, reply)) return reply;
    const id = request.params.id;
    if (!ID.test(id) || !deps.held.entry(id)) return gone(reply);
    await deps.held.remove(id);
    log.info({ event: 'quarantine.delete', id, by: 'admin' }, 'quarantine page delete');
    return reply.redirect(`${home}?done=deleted`, 303);
  });

  // ---- signed links -----------------------------------------------------------------------------------------

  /** The claims of a link request (query on GET, form fields on POST) when they verify; else answers. */
  function linkClaims(
    request: FastifyRequest<{ Params: { id: string } }>,
    reply: FastifyReply,
    from: unknown,
  ): { claims: LinkClaims; signature: string } | undefined {
    if (!deps.linkSecret) {
      void problem(
        reply,
        404,
        'Release links are off',
        'This server does not give out release links. Ask your postmaster to release the message.',
      );
      return undefined;
    }
    const claims: LinkClaims = {
      id: request.params.id,
      recipient: field(from, 'rcpt') ?? '',
      action: 'release',
      expires: /^[0-9]{1,12}$/.test(field(from, 'exp') ?? '') ? Number(field(from, 'exp')) : NaN,
    };
    const signature = field(from, 'sig') ?? '';
    const check = verifyLink(deps.linkSecret, claims, signature);
    if (check.valid) return { claims, signature };
    if (check.problem !== 'expired') {
      errors.inc({ code: 'PW-H022' });
      log.warn(
        { code: 'PW-H022', problem: check.problem, id: claims.id },
        'quarantine page: a bad release link',
      );
    }
    const [status, title, text] =
      check.problem === 'expired'
        ? [410, 'This link has expired', 'Release links are valid for a few days. Ask your postmaster.']
        : check.problem === 'forged'
          ? [
              403,
              'This link is not valid',
              'It was changed or not made by this server. Use the link as sent.',
            ]
          : [400, 'This link is incomplete', 'Part of it is missing. Copy the whole link from the notice.'];
    void problem(reply, status, title, text);
    return undefined;
  }

  /** The entry a verified link may release, or undefined after answering why not. */
  function releasable(claims: LinkClaims, reply: FastifyReply): HeldMessage | undefined {
    const entry = deps.held.entry(claims.id);
    if (!entry) {
      void gone(reply);
      return undefined;
    }
    if (!entry.recipients.includes(claims.recipient)) {
      void problem(reply, 403, 'Not your message', 'This message was not sent to that address.');
      return undefined;
    }
    if (entry.releasableBy !== 'recipient') {
      void problem(
        reply,
        403,
        'Only the postmaster can release this message',
        `It was held because: ${entry.reason}. If you expected it, ask your postmaster, quoting ${entry.id}.`,
      );
      return undefined;
    }
    if ((entry.released ?? []).includes(claims.recipient)) {
      void problem(
        reply,
        409,
        'Already released',
        'This message was released to you before; check your inbox.',
      );
      return undefined;
    }
    return entry;
  }

  app.get<{ Params: { id: string } }>('/quarantine/link/:id', async (request, reply) => {
    const link = linkClaims(request, reply, request.query);
    if (!link) return reply;
    const entry = releasable(link.claims, reply);
    if (!entry) return reply;
    return send(
      reply,
      200,
      'Release a held message',
      html`<h1>Release a held message?</h1>
        <p>
          This message for <strong>${link.claims.recipient}</strong> was held by the mail filter. Release it
          only if you expected it and trust its sender.
        </p>
        ${details(entry, link.claims.recipient)}
        <form method="post" action="${base}/quarantine/link/${entry.id}">
          <input type="hidden" name="rcpt" value="${link.claims.recipient}" />
          <input type="hidden" name="exp" value="${link.claims.expires}" />
          <input type="hidden" name="sig" value="${link.signature}" />
          <p><button class="primary" type="submit">Release it to my inbox</button></p>
        </form>`,
    );
  });

  app.post<{ Params: { id: string } }>('/quarantine/link/:id', async (request, reply) => {
    if (!sameOrigin(request)) return refuseCrossSite(request, reply);
    const link = linkClaims(request, reply, request.body);
    if (!link) return reply;
    const entry = releasable(link.claims, reply);
    if (!entry) return reply;
    const result = await deps.held.release(entry.id, { kind: 'recipient', address: link.claims.recipient });
    log.info(
      {
        event: 'quarantine.release',
        id: entry.id,
        by: 'link',
        recipient: link.claims.recipient,
        result: result.kind,
      },
      'quarantine page release',
    );
    if (result.kind !== 'released') return releaseFailed(reply, result);
    return send(
      reply,
      200,
      'Released',
      html`<h1>Released</h1>
        <p class="note">
          The message is on its way to ${link.claims.recipient}. It should be in your inbox in a minute.
        </p>`,
    );
  });

  // ---- shared answers ---------------------------------------------------------------------------------------

  function gone(reply: FastifyReply) {
    return problem(
      reply,
      404,
      'No such held message',
      'It is not in quarantine: it was released, deleted or expired, or the address is wrong.',
    );
  }

  function releaseFailed(reply: FastifyReply, result: Exclude<Release, { kind: 'released' }>) {
    switch (result.kind) {
      case 'gone':
        return gone(reply);
      case 'already':
        return problem(reply, 409, 'Already released', 'This message was released to you before.');
      case 'busy':
        return problem(
          reply,
          409,
          'Being released',
          'This message is being released right now; look again soon.',
        );
      case 'unavailable':
        errors.inc({ code: 'PW-H024' });
        log.warn({ code: 'PW-H024', reason: result.reason }, 'quarantine page: a release failed');
        return problem(
          reply,
          503,
          'Not released',
          'The mail system did not take the message just now. Nothing changed; try again in a few minutes.',
        );
    }
  }

  function details(entry: HeldMessage, only?: string): Html {
    return html`<dl>
      <dt>Subject</dt>
      <dd>${entry.subject ?? '(no subject)'}</dd>
      <dt>From</dt>
      <dd>${entry.sender || '<>'}</dd>
      <dt>To</dt>
      <dd>${only ?? entry.recipients.join(', ')}</dd>
      <dt>Received</dt>
      <dd>${new Date(entry.time).toUTCString()}</dd>
      <dt>Held because</dt>
      <dd>${entry.reason} (${entry.symbol})</dd>
      <dt>Size</dt>
      <dd>${size(entry.size)}</dd>
      ${
        only === undefined && (entry.released ?? []).length > 0
          ? html`<dt>Released to</dt>
              <dd>${(entry.released ?? []).join(', ')}</dd>`
          : ''
      }
      <dt>Quarantine id</dt>
      <dd>${entry.id}</dd>
    </dl>`;
  }
}
