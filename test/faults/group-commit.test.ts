import fs from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryError, openMemory, type MemoryStore, type UserMemory } from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import { tempDataDir } from '../support/backends.js';
import { PgWireProxy } from '../support/pg-wire-proxy.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

/**
 * Group commit against a real PostgreSQL: what several writers at once, and a database that goes
 * away with a combined call in flight, do to it. The contract on every backend is in
 * test/contract/group-commit-contract.ts.
 */
describe('group commit under faults and contention (PostgreSQL)', () => {
  let db: TestDatabase;
  let proxy: PgWireProxy;
  let proxyUrl: string;
  const dirs: string[] = [];
  const stores: MemoryStore[] = [];

  beforeAll(async () => {
    db = await createTestDatabase('group_commit');
    await (await openMemory({ env: {}, databaseUrl: db.url, journal: false })).close(); // migrate
    ({ proxy, url: proxyUrl } = await PgWireProxy.inFrontOf(db.url));
  });
  afterAll(async () => {
    for (const store of stores) await store.close().catch(() => {});
    await proxy?.stop();
    await db?.drop();
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function open(options: Parameters<typeof openMemory>[0]): Promise<MemoryStore> {
    const store = await openMemory({ env: {}, migrate: false, ...options });
    stores.push(store);
    return store;
  }

  async function usersOf(store: MemoryStore, names: string[]): Promise<UserMemory[]> {
    return Promise.all(names.map(async (n) => store.forUser((await store.startSession(`${n}@example.com`)).user)));
  }

  it('two writers combining stores of the same users and keys in opposite orders never deadlock (lock order)', async () => {
    const a = await open({
      databaseUrl: db.url,
      journal: false,
      groupCommit: { storesInFlight: 2, readsInFlight: 2, maxBatch: 64 },
    });
    const b = await open({
      databaseUrl: db.url,
      journal: false,
      groupCommit: { storesInFlight: 2, readsInFlight: 2, maxBatch: 64 },
    });
    const names = ['gc-lock-1', 'gc-lock-2', 'gc-lock-3'];
    const [usersA, usersB] = [await usersOf(a, names), await usersOf(b, names)];
    const slots = names.flatMap((_, u) => Array.from({ length: 10 }, (_, k) => ({ u, key: `k${k}` })));
    for (let round = 0; round < 6; round += 1) {
      await Promise.all([
        ...slots.map((s) => usersA[s.u]!.store('FACT', s.key, `a${round}`)),
        ...[...slots].reverse().map((s) => usersB[s.u]!.store('FACT', s.key, `b${round}`)),
      ]);
    }
    const statsA = a.groupCommitStats;
    const statsB = b.groupCommitStats;
    console.log(
      `[group commit, two writers] stores ${statsA.stores + statsB.stores} in ${statsA.storeCalls + statsB.storeCalls} calls, refused batches ${statsA.storeBatchesRefused + statsB.storeBatchesRefused}`,
    );
    // A deadlock between two combined calls would show as a refused batch (40P01, then each store
    // sent alone): none may happen, because every batch takes its locks in the same order.
    expect(statsA.storeBatchesRefused + statsB.storeBatchesRefused).toBe(0);
    expect(statsA.storeCalls).toBeLessThan(statsA.stores);
    expect(statsB.storeCalls).toBeLessThan(statsB.stores);
    const rows = await transportOf(a).query<{ n: number }>(
      "select count(*)::int as n from public.memories m join public.memory_users u on u.id = m.user_id where u.identity like 'gc-lock-%' and m.value ~ '^[ab]5$'",
    );
    expect(rows[0]!.n).toBe(slots.length);
  });

  it("an erasure racing combined stores of the same user's keys: each store is written before it or refused after it, and nothing is left", async () => {
    const writer = await open({
      databaseUrl: db.url,
      journal: false,
      groupCommit: { storesInFlight: 1, readsInFlight: 1, maxBatch: 64 },
    });
    const eraser = await open({ databaseUrl: db.url, journal: false });
    const identity = 'gc-erase@example.com';
    const outcomes = { stored: 0, goneFirst: 0 };
    for (let round = 0; round < 8; round += 1) {
      const user = writer.forUser((await writer.startSession(identity)).user);
      for (let k = 0; k < 20; k += 1) await user.store('FACT', `k${k}`, 'before');
      // Stores of many of the user's keys (combined into batches) racing the erasure of all of them.
      const stores = Array.from({ length: 40 }, (_, k) =>
        user.store('FACT', `k${(k * 7) % 20}`, `round ${round}`).then(
          () => 'stored',
          (error: unknown) => error,
        ),
      );
      const report = await eraser.eraseUser(identity);
      expect(report.database.user).toBe(true);
      for (const outcome of await Promise.all(stores)) {
        if (outcome === 'stored') outcomes.stored += 1;
        else {
          // Only what a store alone meets after an erasure: the user is gone.
          expect(outcome).toBeInstanceOf(MemoryError);
          expect((outcome as MemoryError).code).toBe('USER_NOT_PROVISIONED');
          outcomes.goneFirst += 1;
        }
      }
      const left = await transportOf(eraser).query<{ n: number }>(
        'select count(*)::int as n from public.memories where user_id = $1',
        [user.user.id],
      );
      expect(left[0]!.n).toBe(0);
    }
    console.log(
      `[group commit, erasure race] stores ${outcomes.stored} before the erasure, ${outcomes.goneFirst} after`,
    );
  });

  it('an erasure waits for stores holding the user (the store lock, as a consent change takes it), so it never meets a batch in another row order', async () => {
    const memory = await open({ databaseUrl: db.url, journal: false });
    const identity = 'gc-erase-lock@example.com';
    const user = memory.forUser((await memory.startSession(identity)).user);
    await user.store('FACT', 'a', 'one');
    // A batch in flight, as the database sees it: a transaction holding the user's shared store lock.
    const batch = new pg.Client({ connectionString: db.url });
    await batch.connect();
    try {
      await batch.query('begin');
      await batch.query('select pg_advisory_xact_lock_shared(1818979694, hashtext($1::text))', [user.user.id]);
      let settled = false;
      const erasure = memory.eraseUser(identity).finally(() => {
        settled = true;
      });
      // The erasure's backend waits on that advisory lock (seen in pg_stat_activity), not on a row.
      let waiting = false;
      for (let i = 0; i < 100 && !waiting && !settled; i += 1) {
        // Asked outside the open transaction: inside it, pg_stat_activity is a snapshot taken at its
        // first read (stats_fetch_consistency), which would never show the erasure starting to wait.
        const rows = await transportOf(memory).query<{ n: number }>(
          "select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and wait_event = 'advisory' and query like '%memory_erase_user%'",
        );
        waiting = rows[0]!.n > 0;
        if (!waiting) await new Promise((r) => setTimeout(r, 50));
      }
      expect(settled).toBe(false);
      expect(waiting).toBe(true);
      await batch.query('commit');
      expect((await erasure).database.memories).toBe(1);
    } finally {
      await batch.end();
    }
  });

  it('the database stops while stores wait to be combined: each one goes to the journal, and all of them arrive after', async () => {
    proxy.startDatabase();
    const dir = tempDataDir('gc-outage');
    dirs.push(dir);
    const memory = await open({
      databaseUrl: proxyUrl,
      dataDir: dir,
      timeoutMs: 400,
      backgroundSync: false,
      groupCommit: { storesInFlight: 1, readsInFlight: 1, maxBatch: 64 },
    });
    const users = await usersOf(memory, ['gc-out-1', 'gc-out-2', 'gc-out-3', 'gc-out-4']);
    proxy.stopDatabase();
    const writes = users.flatMap((user, u) =>
      Array.from({ length: 5 }, (_, k) => ({ user, key: `k${k}`, value: `gc-out-${u + 1} #${k}` })),
    );
    const receipts = await Promise.all(writes.map((w) => w.user.store('FACT', w.key, w.value)));
    expect(receipts.every((r) => r.savedTo === 'journal')).toBe(true);
    expect(memory.groupCommitStats.storeCalls).toBeLessThan(writes.length);
    // While the database is away, each caller reads its own pending writes.
    expect(await users[2]!.retrieve('FACT', 'k3')).toBe('gc-out-3 #3');

    proxy.startDatabase();
    for (let i = 0; i < 20 && (await memory.sync()).remaining > 0; i += 1) await new Promise((r) => setTimeout(r, 100));
    const direct = await open({ databaseUrl: db.url, journal: false });
    const rows = await transportOf(direct).query<{ identity: string; key: string; value: string }>(
      "select u.identity, m.key, m.value from public.memories m join public.memory_users u on u.id = m.user_id where u.identity like 'gc-out-%' order by 1, 2",
    );
    expect(rows).toHaveLength(writes.length);
    for (const row of rows) expect(row.value.startsWith(row.identity.replace('@example.com', ''))).toBe(true);
  });

  it('close() sends the stores already waiting before it closes the pool: none is lost or refused', async () => {
    const memory = await openMemory({
      env: {},
      migrate: false,
      databaseUrl: db.url,
      journal: false,
      groupCommit: { storesInFlight: 1, readsInFlight: 1, maxBatch: 8 },
    });
    const [dave] = await usersOf(memory, ['gc-close']);
    const pending = Array.from({ length: 30 }, (_, k) => dave!.store('FACT', `k${k}`, `v${k}`));
    await memory.close();
    const receipts = await Promise.all(pending);
    expect(receipts.every((r) => r.applied && r.savedTo === 'database')).toBe(true);
    const check = await open({ databaseUrl: db.url, journal: false });
    const rows = await transportOf(check).query<{ n: number }>(
      'select count(*)::int as n from public.memories where user_id = $1',
      [dave!.user.id],
    );
    expect(rows[0]!.n).toBe(30);
  });

  it('groupCommit: false sends every store alone; bad options are refused before anything is opened', async () => {
    const alone = await open({ databaseUrl: db.url, journal: false, groupCommit: false });
    const [carol] = await usersOf(alone, ['gc-alone']);
    const before = alone.statementCount;
    await Promise.all(Array.from({ length: 10 }, (_, k) => carol!.store('FACT', `k${k}`, `v${k}`)));
    expect(alone.statementCount - before).toBe(10);
    expect(alone.groupCommitStats).toMatchObject({ stores: 0, storeCalls: 0 });

    // Port 9 on loopback has nothing listening: an option error must come first.
    for (const groupCommit of [{ storesInFlight: 0 }, { readsInFlight: 1.5 }, { maxBatch: 0 }, { maxBatch: 5000 }]) {
      const caught = await openMemory({
        env: {},
        databaseUrl: 'postgres://nobody@127.0.0.1:9/none',
        journal: false,
        groupCommit,
      }).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(caught).toBeInstanceOf(MemoryError);
      expect((caught as MemoryError).code).toBe('INVALID_OPTION');
      expect((caught as MemoryError).message).toMatch(/groupCommit\.(storesInFlight|readsInFlight|maxBatch)/);
    }
  });
});
