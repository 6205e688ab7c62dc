import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMemory } from '../../memory/index.js';
import { tempDataDir } from '../support/backends.js';
import { PgWireProxy } from '../support/pg-wire-proxy.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

/**
 * Session start lays the user's pending journal writes over the database's rows by write clock,
 * as retrieve and list do: a pending write older than what the database holds must not win.
 */
describe('session start and pending journal writes', () => {
  let db: TestDatabase;
  let proxy: PgWireProxy;
  let proxyUrl: string;
  const dirs: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase('overlay');
    await (await openMemory({ env: {}, databaseUrl: db.url, journal: false })).close();
    ({ proxy, url: proxyUrl } = await PgWireProxy.inFrontOf(db.url));
  });
  afterAll(async () => {
    await proxy?.stop();
    await db?.drop();
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a journaled write older than a newer database row: the session shows the row; a newer one: the pending write', async () => {
    const dir = tempDataDir('overlay');
    dirs.push(dir);
    const identity = 'overlay@example.com';
    proxy.startDatabase();
    const offline = await openMemory({
      env: {},
      databaseUrl: proxyUrl,
      dataDir: dir,
      migrate: false,
      timeoutMs: 400,
      backgroundSync: false,
    });
    const online = await openMemory({ env: {}, databaseUrl: db.url, journal: false, migrate: false });
    try {
      const user = offline.forUser((await offline.startSession(identity)).user);
      proxy.stopDatabase();
      expect((await user.store('FACT', 'city', 'Lisbon')).savedTo).toBe('journal');
      expect((await user.store('FACT', 'pet', 'cat')).savedTo).toBe('journal');
      // Later, another worker writes the city online: the database's row is newer than the pending one.
      await online.forIdentity(identity).store('FACT', 'city', 'Porto');
      proxy.startDatabase();
      const session = await offline.startSession(identity);
      const seen = Object.fromEntries(session.memories.map((m) => [m.key, m.value]));
      expect(seen).toEqual({ city: 'Porto', pet: 'cat' });
      expect(await user.retrieve('FACT', 'city')).toBe('Porto');
      const report = await offline.sync();
      expect(report).toMatchObject({ applied: 1, older: 1, remaining: 0 });
      expect(await online.forIdentity(identity).retrieve('FACT', 'city')).toBe('Porto');
    } finally {
      await offline.close();
      await online.close();
    }
  });
});
