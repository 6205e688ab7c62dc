import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SecretCipher, openMemory } from '../../memory/index.js';
import { startLivekitServerOnFreePorts } from '../../scripts/livekit/free-ports-server.js';
import type { LivekitServerHandle } from '../../scripts/livekit/server.js';
import { tempDataDir } from '../support/backends.js';
import { cli } from '../support/cli.js';
import { adminQuery, createTestDatabase, type TestDatabase } from '../support/postgres.js';

const keyA = randomBytes(32);
const keyB = randomBytes(32);

describe('lk-memory settings, link, inspect, rotate-key', () => {
  let db: TestDatabase;
  let dataDir: string;
  beforeAll(async () => {
    db = await createTestDatabase('cliadmin');
    dataDir = tempDataDir('cliadmin');
  });
  afterAll(async () => {
    await db?.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  for (const backend of ['embedded', 'postgres'] as const) {
    const base = () => (backend === 'embedded' ? { MEMORY_DATA_DIR: dataDir } : { DATABASE_URL: db.url });

    it(`settings set and get on ${backend}: saved in the database, secrets never printed`, async () => {
      const env = { ...base(), MEMORY_ENCRYPTION_KEY: keyA.toString('base64') };
      const set = await cli(
        [
          'settings',
          'set',
          'alice@example.com',
          '--config',
          '{"voice":"alloy","instructions":"Be brief."}',
          '--secret',
          'API_KEY=sk-plain-alice',
          '--secret',
          'TOKEN=-',
        ],
        env,
        'token-from-stdin\n',
      );
      expect(set.stderr).toBe('');
      expect(set.code).toBe(0);
      expect(set.stdout).toContain('API_KEY ******** (encrypted, key');
      const get = await cli(['settings', 'get', 'alice@example.com', '--json'], env);
      const view = JSON.parse(get.stdout);
      expect(view).toMatchObject({
        tenant: 'default',
        version: 1,
        config: { voice: 'alloy', instructions: 'Be brief.' },
      });
      expect(Object.keys(view.secrets).sort()).toEqual(['API_KEY', 'TOKEN']);
      for (const out of [set.stdout, get.stdout]) {
        expect(out).not.toContain('sk-plain-alice');
        expect(out).not.toContain('token-from-stdin');
      }
      // In the database, and decryptable with the key.
      const memory = await openMemory({ env: base(), cipher: new SecretCipher(keyA), serve: false });
      try {
        const handle = memory.forIdentity('alice@example.com');
        expect(await handle.revealSecrets((await handle.getSettings())!)).toEqual({
          API_KEY: 'sk-plain-alice',
          TOKEN: 'token-from-stdin',
        });
      } finally {
        await memory.close();
      }
      expect((await cli(['settings', 'get', 'nobody@example.com'], env)).code).toBe(1);
    });

    it(`settings refuse bad input with exit 2, and a secret without a key names MEMORY_ENCRYPTION_KEY on ${backend}`, async () => {
      for (const args of [
        ['settings', 'set', 'bob@example.com', '--config', '{not json'],
        ['settings', 'set', 'bob@example.com', '--config', '{"colour":"red"}'],
        ['settings', 'set', 'bob@example.com', '--secret', 'NOEQUALS'],
        ['settings', 'set', 'bob@example.com'],
        ['settings', 'get', 'bob@example.com', '--tenant', 'bad tenant'],
      ]) {
        const result = await cli(args, { ...base(), MEMORY_ENCRYPTION_KEY: keyA.toString('base64') });
        expect(result.code, args.join(' ')).toBe(2);
        expect(result.stderr.trimEnd().split('\n'), args.join(' ')).toHaveLength(1);
      }
      const keyless = await cli(['settings', 'set', 'bob@example.com', '--secret', 'API_KEY=x'], base());
      expect(keyless.code).toBe(4);
      expect(keyless.stderr).toContain('MEMORY_ENCRYPTION_KEY');
      const badKey = await cli(['settings', 'set', 'bob@example.com', '--secret', 'API_KEY=x'], {
        ...base(),
        MEMORY_ENCRYPTION_KEY: 'short',
      });
      expect(badKey.code).toBe(2);
      expect(badKey.stderr).toContain('MEMORY_ENCRYPTION_KEY');
    });

    it(`link, inspect and rotate-key on ${backend}`, async () => {
      const env = { ...base(), MEMORY_ENCRYPTION_KEY: keyA.toString('base64') };
      const authId = '0a0a0a0a-0000-4000-8000-00000000000a';
      expect((await cli(['link', 'carol@example.com', authId], env)).stdout).toContain(`to auth user ${authId}`);
      expect((await cli(['link', 'carol@example.com', 'not-a-uuid'], env)).code).toBe(2);
      expect((await cli(['link', 'carol@example.com'], env)).code).toBe(2);
      await cli(['store', 'carol@example.com', 'FACT', 'city', 'Porto'], env);
      await cli(['settings', 'set', 'carol@example.com', '--secret', 'API_KEY=sk-plain-carol'], env);

      const inspect = await cli(['inspect', 'carol@example.com', '--json'], env);
      expect(inspect.code).toBe(0);
      const report = JSON.parse(inspect.stdout);
      expect(report.profile.authUserId).toBe(authId);
      expect(report.memories).toMatchObject([{ category: 'FACT', key: 'city', value: 'Porto' }]);
      expect(report.locations.database.settings).toBe(1);
      expect(report.audit.map((a: { action: string }) => a.action)).toEqual(
        expect.arrayContaining(['link.set', 'settings.save']),
      );
      expect(inspect.stdout).not.toContain('sk-plain-carol');
      const text = await cli(['inspect', 'carol@example.com'], env);
      expect(text.stdout).toContain('where it lives:');
      expect(text.stdout).not.toContain('sk-plain-carol');

      // Rotate from key A to key B: every value stays readable with B alone.
      const rotate = await cli(['rotate-key'], {
        ...base(),
        MEMORY_ENCRYPTION_KEY: keyB.toString('hex'),
        MEMORY_ENCRYPTION_PREVIOUS_KEYS: keyA.toString('base64'),
      });
      expect(rotate.code).toBe(0);
      expect(rotate.stdout).toMatch(/re-encrypted [1-9]\d* settings row/);
      const memory = await openMemory({ env: base(), cipher: new SecretCipher(keyB), serve: false });
      try {
        for (const [identity, secret] of [
          ['carol@example.com', 'sk-plain-carol'],
          ['alice@example.com', 'sk-plain-alice'],
        ] as const) {
          const handle = memory.forIdentity(identity);
          expect((await handle.revealSecrets((await handle.getSettings())!)).API_KEY).toBe(secret);
        }
      } finally {
        await memory.close();
      }
      expect((await cli(['link', 'carol@example.com', '--unlink'], env)).stdout).toContain(`from auth user ${authId}`);
    });
  }
});

describe('lk-memory doctor', () => {
  let livekit: LivekitServerHandle;
  const livekitEnv = () => ({
    LIVEKIT_URL: livekit.url,
    LIVEKIT_API_KEY: livekit.apiKey,
    LIVEKIT_API_SECRET: livekit.apiSecret,
  });
  beforeAll(async () => {
    livekit = await startLivekitServerOnFreePorts();
  });
  afterAll(async () => {
    await livekit?.stop();
  });

  it('passes every check on a migrated database with a key and a reachable LiveKit', async () => {
    const db = await createTestDatabase('docok');
    try {
      await (await openMemory({ env: {}, databaseUrl: db.url })).close();
      const result = await cli(['doctor'], {
        DATABASE_URL: db.url,
        MEMORY_ENCRYPTION_KEY: keyA.toString('base64'),
        ...livekitEnv(),
      });
      const lines = result.stdout.trimEnd().split('\n');
      // skip: the schema cache (not Supabase), and vectors (no pgvector here, MEMORY_EMBEDDING_MODEL unset).
      expect(lines.map((l) => l.split(/\s+/)[0])).toEqual(['ok', 'ok', 'ok', 'ok', 'skip', 'skip', 'ok', 'ok']);
      expect(result.stdout).toMatch(/^skip\s+vectors\s+no pgvector on this database; search is lexical/m);
      expect(result.code).toBe(0);
    } finally {
      await db.drop();
    }
  });

  it('flags a database that carries the legacy profiles_id_fkey to auth.users, and explains it', async () => {
    const db = await createTestDatabase('doclegacy');
    try {
      await (await openMemory({ env: {}, databaseUrl: db.url })).close();
      await adminQueryOn(db.url, [
        'create schema if not exists auth',
        'create table if not exists auth.users (id uuid primary key)',
        'create table public.profiles (id uuid primary key, display_name text, constraint profiles_id_fkey foreign key (id) references auth.users (id))',
      ]);
      const result = await cli(['doctor'], {
        DATABASE_URL: db.url,
        MEMORY_ENCRYPTION_KEY: keyA.toString('base64'),
        ...livekitEnv(),
      });
      expect(result.code).toBe(1);
      const line = result.stdout.split('\n').find((l) => l.includes('legacy auth.users keys'))!;
      expect(line).toMatch(/^FAIL/);
      expect(line).toContain('public.profiles (profiles_id_fkey)');
      expect(line).toContain('drop constraint');
    } finally {
      await db.drop();
    }
  });

  it('flags a database whose migrations were not applied, and changes nothing', async () => {
    const db = await createTestDatabase('docbare');
    try {
      const result = await cli(['doctor', '--json'], { DATABASE_URL: db.url, ...livekitEnv() });
      expect(result.code).toBe(1);
      const checks = JSON.parse(result.stdout) as Array<{ name: string; status: string; detail: string }>;
      expect(checks.find((c) => c.name === 'migrations')).toMatchObject({ status: 'FAIL' });
      expect(checks.find((c) => c.name === 'migrations')!.detail).toContain('lk-memory migrate');
      expect(checks.find((c) => c.name === 'livekit')).toMatchObject({ status: 'ok' });
      const tables = await adminQuery(`select count(*)::int as n from pg_database where datname = $1`, [db.name]);
      expect(tables.rows[0].n).toBe(1);
      const probe = await openMemory({ env: {}, databaseUrl: db.url, migrate: false });
      const { migrationStatus } = await import('../../memory/index.js');
      const { transportOf } = await import('../../memory/store.js');
      expect((await migrationStatus(transportOf(probe))).current).toBeUndefined();
      await probe.close();
    } finally {
      await db.drop();
    }
  });

  it('fails the LiveKit check with what to set when the credentials are wrong', async () => {
    const dataDir = tempDataDir('doclk');
    try {
      const result = await cli(['doctor'], {
        MEMORY_DATA_DIR: dataDir,
        LIVEKIT_URL: livekit.url,
        LIVEKIT_API_KEY: 'devkey',
        LIVEKIT_API_SECRET: 'wrong-secret',
      });
      const line = result.stdout.split('\n').find((l) => l.split(/\s{2,}/)[1] === 'livekit')!;
      expect(line).toMatch(/^FAIL/);
      expect(line).toContain('LIVEKIT_API_SECRET');
      expect(result.code).toBe(1);
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

async function adminQueryOn(url: string, statements: string[]): Promise<void> {
  const pg = await import('pg');
  const client = new pg.default.Client({ connectionString: url });
  await client.connect();
  try {
    for (const sql of statements) await client.query(sql);
  } finally {
    await client.end();
  }
}
