import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMemory, type MemoryStore } from '../../memory/index.js';
import { tempDataDir } from '../support/backends.js';
import { PgWireProxy } from '../support/pg-wire-proxy.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { cleanEnv, startInteractive } from '../support/processes.js';

const HOUR = 60 * 60 * 1000;

type Host = Awaited<ReturnType<typeof startInteractive>>;
type Answer<T> = { ok?: T; error?: { code: string; message: string } };

/**
 * Two worker hosts whose wall clocks differ by an hour, in both directions, writing one user's
 * memory in real processes against one real PostgreSQL. An acknowledged write must be readable
 * afterwards whatever the clocks say: online writes are ordered by the database, not by the hosts.
 */
describe('clock skew between worker hosts', () => {
  let db: TestDatabase;
  let proxy: PgWireProxy;
  let proxyUrl: string;
  let check: MemoryStore;
  const hosts: Host[] = [];
  const dirs: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase('skew');
    check = await openMemory({ env: {}, databaseUrl: db.url, journal: false });
    ({ proxy, url: proxyUrl } = await PgWireProxy.inFrontOf(db.url));
  });
  afterAll(async () => {
    await Promise.all(hosts.map((h) => h.stop()));
    await check?.close();
    await proxy?.stop();
    await db?.drop();
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function host(identity: string, skewMs: number, url = db.url): Promise<Host> {
    const dir = tempDataDir('skew');
    dirs.push(dir);
    const h = await startInteractive(
      'test/support/skewed-host.ts',
      [url, dir, identity],
      cleanEnv({ CLOCK_SKEW_MS: String(skewMs) }),
    );
    hosts.push(h);
    return h;
  }
  const valueOf = async (identity: string, category: string, key: string) =>
    check.forIdentity(identity).retrieve(category, key);

  for (const [label, skewA, skewB] of [
    ['A an hour ahead of B', HOUR, 0],
    ['A an hour behind B', -HOUR, 0],
    ['B an hour behind A', 0, -HOUR],
  ] as const) {
    it(`${label}: A forgets, then B stores; B's acknowledged value is what everyone reads`, async () => {
      const identity = `skew-forget-${skewA}-${skewB}@example.com`;
      const a = await host(identity, skewA);
      const b = await host(identity, skewB);
      expect(
        (await a.send<Answer<unknown>>({ op: 'store', category: 'TASK', key: 'todo', value: 'old' })).ok,
      ).toMatchObject({ applied: true });
      expect((await a.send<Answer<{ existed: boolean }>>({ op: 'forget', category: 'TASK', key: 'todo' })).ok).toEqual({
        existed: true,
      });
      const receipt = await b.send<Answer<{ savedTo: string; applied: boolean }>>({
        op: 'store',
        category: 'TASK',
        key: 'todo',
        value: 'buy milk',
      });
      expect(receipt.ok).toMatchObject({ savedTo: 'database', applied: true });
      expect(
        (await b.send<Answer<{ value: string | null }>>({ op: 'retrieve', category: 'TASK', key: 'todo' })).ok,
      ).toEqual({ value: 'buy milk' });
      expect(
        (await a.send<Answer<{ value: string | null }>>({ op: 'retrieve', category: 'TASK', key: 'todo' })).ok,
      ).toEqual({ value: 'buy milk' });
      expect(await valueOf(identity, 'TASK', 'todo')).toBe('buy milk');
    });

    it(`${label}: A stores, then B stores the same key; the later acknowledged write wins`, async () => {
      const identity = `skew-store-${skewA}-${skewB}@example.com`;
      const a = await host(identity, skewA);
      const b = await host(identity, skewB);
      expect(
        (await a.send<Answer<unknown>>({ op: 'store', category: 'PREFERENCE', key: 'drink', value: 'tea' })).ok,
      ).toMatchObject({ applied: true });
      expect(
        (await b.send<Answer<unknown>>({ op: 'store', category: 'PREFERENCE', key: 'drink', value: 'coffee' })).ok,
      ).toMatchObject({ applied: true });
      expect(await valueOf(identity, 'PREFERENCE', 'drink')).toBe('coffee');
      expect(
        (await a.send<Answer<unknown>>({ op: 'store', category: 'PREFERENCE', key: 'drink', value: 'water' })).ok,
      ).toMatchObject({ applied: true });
      expect(await valueOf(identity, 'PREFERENCE', 'drink')).toBe('water');
    });
  }

  it('a host an hour behind journals a deletion after its online write: the replay still deletes (its clock is never behind what it saw)', async () => {
    const identity = 'skew-journal@example.com';
    proxy.startDatabase();
    const slow = await host(identity, -HOUR, proxyUrl);
    expect(
      (await slow.send<Answer<unknown>>({ op: 'store', category: 'FACT', key: 'flight', value: 'friday' })).ok,
    ).toMatchObject({ savedTo: 'database' });
    proxy.stopDatabase();
    // The database is unreachable: the deletion waits in this host's journal with its own clock.
    expect(
      (await slow.send<Answer<{ existed: boolean }>>({ op: 'forget', category: 'FACT', key: 'flight' })).ok,
    ).toEqual({ existed: true });
    expect(
      (await slow.send<Answer<{ value: string | null }>>({ op: 'retrieve', category: 'FACT', key: 'flight' })).ok,
    ).toEqual({ value: null });
    proxy.startDatabase();
    const report = await slow.send<Answer<{ applied: number; remaining: number }>>({ op: 'sync' });
    expect(report.ok).toMatchObject({ applied: 1, remaining: 0 });
    expect(await valueOf(identity, 'FACT', 'flight')).toBeNull();
  });

  it('a journaled write made before a newer online write of another host loses on replay, and the replay says so', async () => {
    const identity = 'skew-replay-order@example.com';
    proxy.startDatabase();
    const early = await host(identity, 0, proxyUrl);
    proxy.stopDatabase();
    expect(
      (await early.send<Answer<unknown>>({ op: 'store', category: 'FACT', key: 'city', value: 'Lisbon' })).ok,
    ).toMatchObject({ savedTo: 'journal' });
    proxy.startDatabase();
    // Another host, an hour behind, writes the same key online later: the database orders it last.
    const late = await host(identity, -HOUR);
    expect(
      (await late.send<Answer<unknown>>({ op: 'store', category: 'FACT', key: 'city', value: 'Porto' })).ok,
    ).toMatchObject({ applied: true });
    const report = await early.send<Answer<{ applied: number; older: number }>>({ op: 'sync' });
    expect(report.ok, JSON.stringify(report)).toMatchObject({ applied: 0, older: 1 });
    expect(await valueOf(identity, 'FACT', 'city')).toBe('Porto');
  });
});
