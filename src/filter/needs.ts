/**
 * What the content filter's configuration asks of the rest of `serve` (a store, a resolver, the URI lists),
 * answered from the config alone: `serve` reads it before deciding whether to load the filter at all.
 */
import type { Config } from '../config/schema.js';

function scannerRuns(config: Readonly<Config>, name: (typeof config.filter.scanners)[number]): boolean {
  const filter = config.filter;
  return filter.enabled && filter.scanners.includes(name) && filter[name].mode !== 'off';
}

/** Whether the filter keeps state (the Bayes token counts), so `serve` opens the store for it. */
export function filterNeedsStore(config: Readonly<Config>): boolean {
  return scannerRuns(config, 'bayes');
}

/** Whether the uribl scanner has DNS lists to ask. */
export function uriblRuns(config: Readonly<Config>): boolean {
  return scannerRuns(config, 'uribl') && config.filter.uribl.lists.length > 0;
}

/** Whether a filter scanner looks things up in DNS, so `serve` starts the resolver for it. */
export function filterNeedsDns(config: Readonly<Config>): boolean {
  return scannerRuns(config, 'authentication') || uriblRuns(config);
}
