/**
 * Wiring of the quarantine page and its release links for `serve`: the link key (read from
 * `http.link_secret_file`, or created there with 32 random bytes, mode 0600, when it is missing), the notice's
 * link maker, and the page's view of the filter's quarantine (release through the re-injection smtpd).
 *
 * Links are on only with `http.public_url`. A key that cannot be read or created turns them off with PW-H021
 * (notices then say to ask the postmaster, as without links); the daemon runs on.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/schema.js';
import { linkExpiry, MIN_LINK_SECRET_BYTES, releaseLinkPath } from '../core/release-link.js';
import type { NoticeSettings } from '../filter/notice.js';
import type { QuarantineOps } from '../admin/quarantine.js';
import type { QuarantinePageOptions } from '../http/quarantine-page/routes.js';
import type { Logger } from '../observe/logger.js';

/** The key of release links, or undefined (links off) when there is no public_url or no usable key. */
export function linkSecret(config: Readonly<Config>, baseDir: string, logger: Logger): Buffer | undefined {
  if (config.http.public_url === '') return undefined;
  const file = path.resolve(baseDir, config.http.link_secret_file);
  try {
    let secret: Buffer;
    try {
      secret = readFileSync(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      secret = randomBytes(MIN_LINK_SECRET_BYTES);
      writeFileSync(file, secret, { mode: 0o600, flag: 'wx' });
      logger.info({ code: 'PW-H020', file }, 'created the key of release links');
    }
    if (secret.length < MIN_LINK_SECRET_BYTES) throw new Error(`fewer than ${MIN_LINK_SECRET_BYTES} bytes`);
    return secret;
  } catch (error) {
    logger.error({ code: 'PW-H021', file, reason: (error as Error).message }, 'release links are off');
    return undefined;
  }
}

/** The public base without a trailing slash, e.g. `https://mail.example.org/postwarden`. */
const publicBase = (config: Readonly<Config>): string => config.http.public_url.replace(/\/+$/, '');

/** The notice's link maker: valid `http.link_valid_days`, never beyond the message's retention. */
export function noticeLinks(config: Readonly<Config>, secret: Buffer): NoticeSettings['releaseLink'] {
  return (entry, recipient) => {
    const expires = linkExpiry(
      Date.now(),
      entry.time,
      config.http.link_valid_days,
      config.filter.quarantine.retention_days,
    );
    return {
      url: publicBase(config) + releaseLinkPath(secret, { id: entry.id, recipient, expires }),
      expires: new Date(expires * 1000),
    };
  };
}

/** The page's options over the filter's quarantine; releases go through the admin operations. */
export function quarantinePageOptions(
  config: Readonly<Config>,
  ops: QuarantineOps,
  secret: Buffer | undefined,
): QuarantinePageOptions {
  const quarantine = ops.quarantine;
  const url = config.http.public_url === '' ? undefined : new URL(publicBase(config));
  return {
    held: {
      list: (options) => quarantine.list(options),
      entry: (id) => quarantine.entry(id),
      header: (id, maxBytes) => quarantine.header(id, maxBytes),
      release: (id, by) => ops.releaseAs(id, by),
      remove: (id) => quarantine.remove(id),
    },
    basePath: url ? url.pathname.replace(/\/+$/, '') : '',
    ...(url ? { publicOrigin: url.origin } : {}),
    secureCookies: url?.protocol === 'https:',
    ...(secret ? { linkSecret: secret } : {}),
  };
}
