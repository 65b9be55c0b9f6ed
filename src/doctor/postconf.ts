/**
 * Runs `postconf` (main.cf with every default and `$name` expanded, master.cf services, their `-o` overrides)
 * against the live Postfix or `-c DIR`, with a deadline, and hands the text to postfix-config.ts.
 *
 * Failure: PostconfMissing when postconf is not installed (no Postfix: the caller exits 69); PostconfFailed with
 * postconf's own message when it cannot read the configuration (no main.cf, a bad config_directory).
 */
import { execFile } from 'node:child_process';
import { parseParameters, parseServices, type PostfixConfig } from './postfix-config.js';

const DEADLINE_MS = 10_000;

export class PostconfMissing extends Error {}
export class PostconfFailed extends Error {}

function postconf(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'postconf',
      [...args],
      {
        timeout: DEADLINE_MS,
        maxBuffer: 16 * 1024 * 1024,
        env: { ...process.env, PATH: `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin` },
      },
      (error, stdout, stderr) => {
        if (!error) return resolve(stdout);
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
          return reject(
            new PostconfMissing('postconf not found: is Postfix installed (apt install postfix)?'),
          );
        }
        const text = stderr
          .split('\n')
          .filter((l) => !/warning:/.test(l))
          .join(' ')
          .trim();
        reject(new PostconfFailed(`postconf ${args.join(' ')}: ${text || error.message}`));
      },
    );
  });
}

/** The live configuration, or the one in `configDir` (postconf -c). */
export async function readPostfixConfig(configDir?: string): Promise<PostfixConfig> {
  const c = configDir !== undefined ? ['-c', configDir] : [];
  const [main, master, overrides] = await Promise.all([
    postconf([...c, '-x']),
    postconf([...c, '-M']),
    postconf([...c, '-P']),
  ]);
  return { main: parseParameters(main), services: parseServices(master, overrides) };
}
