/**
 * The scanner pipeline of `filter.scanners`, in that order, without the scanners whose mode is `off`.
 */
import { hostname } from 'node:os';
import path from 'node:path';
import { ZipArchiveLister } from '../adapters/archive.js';
import type { ScannerStage } from '../core/content.js';
import { createAntivirusScanner, type VirusScanner } from '../core/scanners/antivirus.js';
import { createAuthenticationScanner, type MessageAuthenticator } from '../core/scanners/authentication.js';
import { type ArchiveLister, createBannedScanner, needsWholePart } from '../core/scanners/banned.js';
import { createBayesScanner } from '../core/scanners/bayes.js';
import { createLoopScanner } from '../core/scanners/loop.js';
import type { BayesModel } from '../core/spam/bayes.js';
import { createRulesScanner } from '../core/scanners/rules.js';
import { createUriblScanner, type UriLists } from '../core/scanners/uribl.js';
import type { LookupTable } from '../core/ports.js';
import type { MapRef } from '../core/schema.js';
import { createSanityScanner } from '../core/scanners/sanity.js';
import type { Config } from '../config/schema.js';
import type { DecisionRecorder } from '../core/decisions.js';
import type { Store } from '../core/store.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { Quarantine } from './quarantine.js';
import type { NoticeSettings } from './notice.js';
import { FilterService, ownHeaderFields } from './service.js';
import type { ParseLimits } from './parse.js';
import { Spool } from './spool.js';

/** What the scanners reach outside the core. */
export interface ScannerDeps {
  readonly virusScanner?: VirusScanner;
  readonly archives?: ArchiveLister;
  readonly bayes?: BayesModel;
  /** DKIM, SPF, DMARC and ARC (src/adapters/message-auth.ts). */
  readonly authenticator?: MessageAuthenticator;
  /** The URI lists with their resolver and health (src/cli/dns.ts), and the opener of uribl's maps. */
  readonly uriLists?: UriLists;
  readonly open?: (ref: MapRef, key: string) => LookupTable[];
}

/** Deadline of the scanners that only read what the parser found. */
const PURE_SCANNER_TIMEOUT_MS = 5000;

/** The name this host goes by in the filter's header fields. */
function instanceName(config: Readonly<Config>): string {
  return config.hostname || hostname();
}

/** The authserv-id of our Authentication-Results: the setting, or the host's name. */
function authservId(config: Readonly<Config>): string {
  return config.filter.authentication.authserv_id || instanceName(config);
}

export function buildScannerStages(config: Readonly<Config>, deps: ScannerDeps): ScannerStage[] {
  const filter = config.filter;
  const stages: ScannerStage[] = [];
  for (const name of filter.scanners) {
    const settings = filter[name];
    if (settings.mode === 'off') continue;
    const mode = settings.mode;
    switch (name) {
      case 'loop':
        stages.push({
          scanner: createLoopScanner(filter.loop),
          mode,
          timeoutMs: PURE_SCANNER_TIMEOUT_MS,
          onFailure: 'pass',
        });
        break;
      case 'sanity':
        stages.push({
          scanner: createSanityScanner(filter.sanity),
          mode,
          timeoutMs: PURE_SCANNER_TIMEOUT_MS,
          onFailure: 'pass',
        });
        break;
      case 'banned':
        stages.push({
          scanner: createBannedScanner(filter.banned, deps.archives ?? new ZipArchiveLister()),
          mode,
          timeoutMs: PURE_SCANNER_TIMEOUT_MS * 6,
          onFailure: 'defer',
        });
        break;
      case 'authentication':
        if (!deps.authenticator) throw new Error('authentication needs the DNS resolver');
        stages.push({
          scanner: createAuthenticationScanner(filter.authentication, deps.authenticator, authservId(config)),
          mode,
          timeoutMs: filter.authentication.timeout_ms,
          // Without an answer the message only lacks these symbols and the Authentication-Results field.
          onFailure: 'pass',
        });
        break;
      case 'uribl': {
        const uribl = filter.uribl;
        const block = deps.open?.(uribl.block, 'filter.uribl.block') ?? [];
        const skip = deps.open?.(uribl.skip, 'filter.uribl.skip') ?? [];
        if (uribl.lists.length > 0 && !deps.uriLists) throw new Error('uribl needs the DNS resolver');
        const dns = uribl.lists.length > 0 ? deps.uriLists : undefined;
        if (block.length === 0 && !dns) break; // nothing to ask, nothing to look up
        stages.push({
          scanner: createUriblScanner(uribl, { ...(dns ? { dns } : {}), block, skip }),
          mode,
          // Past the resolver's own deadline (timeout × tries), so its reason is the one logged.
          timeoutMs: PURE_SCANNER_TIMEOUT_MS * 2,
          // Without answers the message only lacks these symbols.
          onFailure: 'pass',
        });
        break;
      }
      case 'rules':
        stages.push({
          scanner: createRulesScanner(filter.rules),
          mode,
          timeoutMs: PURE_SCANNER_TIMEOUT_MS,
          onFailure: 'pass',
        });
        break;
      case 'bayes':
        if (!deps.bayes) throw new Error('bayes needs the state store');
        stages.push({
          scanner: createBayesScanner(filter.bayes, deps.bayes),
          mode,
          timeoutMs: PURE_SCANNER_TIMEOUT_MS,
          // A classifier that cannot reach its store only loses its score: the message passes.
          onFailure: 'pass',
        });
        break;
      case 'antivirus': {
        if (!deps.virusScanner) throw new Error('antivirus needs a virus scanner (clamd)');
        const av = filter.antivirus;
        stages.push({
          scanner: createAntivirusScanner(deps.virusScanner),
          mode,
          // Past the adapter's own deadline, so its more specific reason is the one logged.
          timeoutMs: av.timeout_ms + 1000,
          onFailure: av.on_failure,
        });
        break;
      }
    }
  }
  return stages;
}

/** How the filter parses messages for these stages: `filter.parse`, and which attachments are read whole. */
export function parseLimits(filter: Config['filter'], stages: readonly ScannerStage[]): ParseLimits {
  return {
    maxDepth: filter.parse.max_depth,
    maxParts: filter.parse.max_parts,
    keepBytes: filter.parse.keep_bytes,
    maxTextChars: filter.parse.max_text_chars,
    // Only the banned scanner reads attachment content (the antivirus reads the spooled message).
    wholeParts: stages.some((s) => s.scanner.name === 'banned') ? needsWholePart(filter.banned) : () => false,
  };
}

/** The filter service from the config: spool, quarantine and re-injection target (paths from the config's directory). */
export function buildFilterService(
  config: Readonly<Config>,
  baseDir: string,
  stages: readonly ScannerStage[],
  logger: Logger,
  metrics: Metrics,
  store?: Store,
  bayes?: BayesModel,
  isLocalSender?: (address: string) => Promise<boolean>,
  releaseLink?: NoticeSettings['releaseLink'],
  decisions?: DecisionRecorder,
): { service: FilterService; spool: Spool; quarantine: Quarantine } {
  const filter = config.filter;
  const spool = new Spool(
    path.resolve(baseDir, filter.spool_dir),
    filter.max_message_bytes,
    ownHeaderFields(authservId(config)),
  );
  const quarantine = new Quarantine(
    path.resolve(baseDir, filter.quarantine.dir),
    filter.quarantine.retention_days,
    store,
  );
  const colon = filter.reinject.lastIndexOf(':');
  const instance = instanceName(config);
  const service = new FilterService({
    stages,
    spool,
    quarantine,
    reinject: {
      host: filter.reinject.slice(0, colon),
      port: Number(filter.reinject.slice(colon + 1)),
      name: instance,
      timeoutMs: Math.min(60_000, filter.message_timeout_ms),
    },
    parse: parseLimits(filter, stages),
    messageTimeoutMs: filter.message_timeout_ms,
    beforeQueue: filter.mode === 'before_queue',
    ...(isLocalSender ? { isLocalSender } : {}),
    ...(decisions ? { decisions } : {}),
    ...(bayes && filter.bayes.autolearn.enabled && stages.some((s) => s.scanner.name === 'bayes')
      ? {
          autolearn: {
            model: bayes,
            settings: { ...filter.bayes.autolearn, max_tokens: filter.bayes.max_tokens },
          },
        }
      : {}),
    // Spam thresholds and X-Spam headers only when a scanner scores spam: without one, "No, score=0" would read
    // as "checked, not spam".
    ...(stages.some((s) => s.scanner.name === 'rules' || s.scanner.name === 'bayes')
      ? {
          spam: {
            tagAt: filter.spam.tag_at,
            holdAt: filter.mode === 'before_queue' ? filter.spam.reject_at : filter.spam.quarantine_at,
          },
        }
      : {}),
    ...(filter.quarantine.notify
      ? {
          notify: {
            postmaster: filter.quarantine.postmaster,
            instance,
            ...(releaseLink ? { releaseLink } : {}),
          },
        }
      : {}),
    instance,
    logger,
    metrics,
  });
  return { service, spool, quarantine };
}
