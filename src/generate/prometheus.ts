/**
 * The Prometheus scrape job, rendered from deploy/prometheus/scrape.yml with http.listen as the target.
 *
 * Contract: pure; the caller reads the template.
 */
import type { Config } from '../config/schema.js';

export function renderPrometheusScrape(config: Readonly<Config>, template: string): string {
  const target = config.http.listen.replace(/^0\.0\.0\.0:/, '127.0.0.1:').replace(/^\[::\]:/, '[::1]:');
  return template.replace(/targets: \['[^']*'\]/, `targets: ['${target}']`);
}
