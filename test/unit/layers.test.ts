/**
 * The lint rule that keeps dependencies pointing inward (eslint.config.js, `postwarden/layers`): the core and
 * util import no socket, driver or face; faces import no other face; only cli wires them together.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const eslint = new ESLint({ cwd: ROOT });

async function layerErrors(file: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: path.join(ROOT, file) });
  return (result?.messages ?? []).filter((m) => m.ruleId === 'postwarden/layers').map((m) => m.message);
}

const cases: [string, string, string, boolean][] = [
  ['core imports a socket module', 'src/core/x.ts', "import net from 'node:net';", false],
  ['core imports a database driver', 'src/core/x.ts', "import Redis from 'ioredis';", false],
  ['core imports fastify', 'src/core/checks/x.ts', "import Fastify from 'fastify';", false],
  [
    'core imports a face',
    'src/core/checks/x.ts',
    "import { PolicyServer } from '../../policy/server.js';",
    false,
  ],
  ['core imports maps', 'src/core/x.ts', "import { MapRegistry } from '../maps/index.js';", false],
  ['util imports core', 'src/util/x.ts', "import { runPipeline } from '../core/pipeline.js';", false],
  ['maps imports a face', 'src/maps/x.ts', "import { buildHttpApp } from '../http/app.js';", false],
  [
    'a face imports another face',
    'src/http/x.ts',
    "import { PolicyServer } from '../policy/server.js';",
    false,
  ],
  [
    'core imports core and util',
    'src/core/checks/x.ts',
    "import { canonicalIp } from '../../util/ip.js';",
    true,
  ],
  ['core imports zod (pure)', 'src/core/x.ts', "import { z } from 'zod';", true],
  [
    'a face imports maps and core',
    'src/policy/x.ts',
    "import { MapRegistry } from '../maps/index.js';",
    true,
  ],
  ['cli wires faces', 'src/cli/x.ts', "import { PolicyServer } from '../policy/server.js';", true],
  ['http uses the admin operations', 'src/http/x.ts', "import { ListOps } from '../admin/lists.js';", true],
  [
    'admin reaches the quarantine files',
    'src/admin/x.ts',
    "import { Quarantine } from '../filter/quarantine.js';",
    true,
  ],
  ['admin imports the http face', 'src/admin/x.ts', "import { buildHttpApp } from '../http/app.js';", false],
  ['core imports admin', 'src/core/x.ts', "import { ListOps } from '../admin/lists.js';", false],
  ['doctor uses the adapters', 'src/doctor/x.ts', "import { DnsClient } from '../adapters/dns.js';", true],
  ['doctor imports a face', 'src/doctor/x.ts', "import { needsStore } from '../policy/service.js';", false],
  ['cli runs the doctor', 'src/cli/x.ts', "import { judgeWiring } from '../doctor/wiring.js';", true],
];

for (const [name, file, code, allowed] of cases) {
  test(`layers: ${name} → ${allowed ? 'allowed' : 'refused'}`, async () => {
    const errors = await layerErrors(
      file,
      `${code}\nexport const used = [${/import (\w+|\{ (\w+) \})/.exec(code)?.[2] ?? /import (\w+)/.exec(code)?.[1]}];\n`,
    );
    assert.equal(errors.length === 0, allowed, errors.join('; '));
  });
}
