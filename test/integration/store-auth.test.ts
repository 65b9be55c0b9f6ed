/**
 * The store's config to driver path with secrets, against a real redis-server that requires a password:
 * `store.password_file` logs in (the password never in the config), a wrong one leaves the store unavailable
 * (PW-S001 on use, never a crash), an unreadable file is a configuration error naming the key; SQLite takes
 * `store.max_bytes` as its file cap.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { storeOptions } from '../../src/cli/common.js';
import { validateConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { StoreUnavailable } from '../../src/core/store.js';
import { openStore, StoreOptionsError } from '../../src/store/index.js';
import { type RedisServer, startRedis } from '../harness/redis.js';

function config(store: Record<string, unknown>): Readonly<Config> {
  const loaded = validateConfig({ local_domains: ['example.org'], store }, { kind: 'embedded' });
  assert.ok(loaded.ok, JSON.stringify(loaded.ok ? '' : loaded.problems));
  return loaded.config;
}

describe('store secrets and caps', () => {
  let redis: RedisServer;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pw-store-auth-'));
    redis = await startRedis();
    redis.cli('CONFIG', 'SET', 'requirepass', 'correct horse');
    writeFileSync(path.join(dir, 'good'), 'correct horse\n', { mode: 0o600 });
    writeFileSync(path.join(dir, 'bad'), 'battery staple\n', { mode: 0o600 });
  });
  after(async () => {
    await redis.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('logs in with store.password_file (a relative path from the config directory)', async () => {
    const options = storeOptions(config({ driver: 'redis', url: redis.url, password_file: 'good' }), dir);
    const store = await openStore(options);
    try {
      await store.set('auth-test', 'yes', 60);
      assert.equal(await store.get('auth-test'), 'yes');
    } finally {
      await store.close();
    }
  });

  it('a wrong password: the store is unavailable, operations fail with PW-S001', async () => {
    const store = await openStore(
      storeOptions(config({ driver: 'redis', url: redis.url, password_file: 'bad', timeout_ms: 200 }), dir),
    );
    try {
      await assert.rejects(store.get('auth-test'), (error: unknown) => error instanceof StoreUnavailable);
      assert.equal(store.health().healthy, false);
    } finally {
      await store.close();
    }
  });

  it('an unreadable password file is a configuration error naming the key', () => {
    assert.throws(
      () => storeOptions(config({ driver: 'redis', url: redis.url, password_file: 'missing' }), dir),
      (error: unknown) =>
        error instanceof StoreOptionsError && /store\.password_file: cannot read missing/.test(error.message),
    );
  });

  it('sqlite takes store.max_bytes, 0 for no cap', () => {
    const capped = storeOptions(config({ driver: 'sqlite', path: 'state.db', max_bytes: 1_048_576 }), dir);
    assert.equal(capped.driver === 'sqlite' && capped.maxBytes, 1_048_576);
    const uncapped = storeOptions(config({ driver: 'sqlite', path: 'state.db', max_bytes: 0 }), dir);
    assert.equal(uncapped.driver === 'sqlite' && uncapped.maxBytes, undefined);
  });
});
