import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMemory, type MemoryStore } from '../../memory/index.js';
import { tempDataDir } from '../support/backends.js';
import { PgWireProxy } from '../support/pg-wire-proxy.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

/**
 * "One database round trip" counted on the wire: every message the client sends passes through a
 * proxy that counts Sync and Query messages.
 */
async function expectOneRoundTripPerOperation(memory: MemoryStore, proxy: PgWireProxy): Promise<void> {
  // Warm the pool so that connection start-up is not counted as the operation.
  await memory.startSession('warm-up@example.com');

  proxy.reset();
  const started = await memory.startSession('wire-new@example.com', { memoryLimit: 20 });
  expect(proxy.roundTrips).toBe(1);
  expect(proxy.counts.get('Q') ?? 0).toBe(0);

  const handle = memory.forUser(started.user);
  for (const [name, op] of [
    ['store', () => handle.store('FACT', 'k', 'v')],
    ['retrieve', () => handle.retrieve('FACT', 'k')],
    ['list', () => handle.list()],
    ['forget', () => handle.forget('FACT', 'k')],
    [
      'startSession (known user, with memories)',
      () => memory.startSession('wire-new@example.com', { memoryLimit: 20 }),
    ],
  ] as const) {
    proxy.reset();
    await op();
    expect(proxy.roundTrips, name).toBe(1);
  }
}

describe('one round trip per operation, counted on the wire', () => {
  let db: TestDatabase;
  let dataDir: string;
  beforeAll(async () => {
    db = await createTestDatabase('wire');
    dataDir = tempDataDir('wire');
  });
  afterAll(async () => {
    await db?.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('PostgreSQL', async () => {
    const { proxy, url } = await PgWireProxy.inFrontOf(db.url);
    const memory = await openMemory({ env: {}, databaseUrl: url, maxConnections: 1 });
    try {
      await expectOneRoundTripPerOperation(memory, proxy);
    } finally {
      await memory.close();
      await proxy.stop();
    }
  });

  it('embedded, through the socket a job process uses', async () => {
    const owner = await openMemory({ env: {}, dataDir, embeddedRole: 'owner' });
    const socketPath = path.join(dataDir, '.s.PGSQL.5432');
    const proxy = await new PgWireProxy({ path: socketPath }).start();
    const client = await openMemory({
      env: {},
      databaseUrl: `postgres://postgres@127.0.0.1:${proxy.port}/postgres`,
      migrate: false,
      maxConnections: 1,
    });
    try {
      await expectOneRoundTripPerOperation(client, proxy);
    } finally {
      await client.close();
      await proxy.stop();
      await owner.close();
    }
  });
});
