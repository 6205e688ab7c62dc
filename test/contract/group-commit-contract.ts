import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MemoryError, MemoryStore, type GroupCommit, type Lifecycle, type StoreReceipt } from '../../memory/index.js';
import { rpc } from '../../memory/rpc.js';
import { rpcTransportOf } from '../../memory/store.js';
import { jsonArg } from '../../memory/transports/call.js';
import type { BackendUnderTest } from '../support/backends.js';

/** A fresh identity per test, so tests that share one database never share a user. */
const fresh = (label: string) => `${label}-${randomUUID()}@example.com`;

/**
 * A store of its own over the backend's transport, so that its group commit counters count this
 * test's calls only. One call of each kind in flight: everything that arrives meanwhile is combined.
 */
function storeOver(memory: MemoryStore, lifecycle: Partial<Lifecycle> = {}, groupCommit?: GroupCommit): MemoryStore {
  return new MemoryStore(rpcTransportOf(memory), {
    namespace: memory.namespace,
    maxValueBytes: 16 * 1024,
    lifecycle,
    groupCommit: groupCommit ?? { storesInFlight: 1, readsInFlight: 1, maxBatch: 64 },
  });
}

function settle<T>(promise: Promise<T>): Promise<{ ok: T } | { error: unknown }> {
  return promise.then(
    (ok) => ({ ok }),
    (error: unknown) => ({ error }),
  );
}

/**
 * Group commit (memory/combiner.ts) on every backend of the store contract: stores and reads that
 * arrive while another call is in flight go together in one call, and every caller still gets
 * exactly the answer, or the typed error, that its call alone would have given.
 */
export function describeGroupCommitContract(get: () => BackendUnderTest): void {
  describe('group commit', () => {
    it('stores of several users that arrive together go in fewer calls, each answered as alone, each under its own user', async () => {
      const { memory, sql } = get();
      const store = storeOver(memory);
      const users = await Promise.all(
        ['a', 'b', 'c'].map(async (n) => store.forUser((await store.startSession(fresh(`gc-${n}`))).user)),
      );
      const writes = users.flatMap((user, u) =>
        Array.from({ length: 8 }, (_, k) => ({ user, key: `k${k}`, value: `user ${u} value ${k}` })),
      );
      const receipts = await Promise.all(writes.map((w) => w.user.store('FACT', w.key, w.value)));

      const stats = store.groupCommitStats;
      expect(stats.stores).toBe(writes.length);
      expect(stats.storeCalls).toBeLessThan(writes.length);
      expect(stats.storeBatchesRefused).toBe(0);
      for (const receipt of receipts) {
        expect(receipt).toMatchObject({ savedTo: 'database', applied: true });
        expect(receipt.updatedAt).toBeInstanceOf(Date);
      }
      for (const [u, user] of users.entries()) {
        const listed = await user.list();
        expect(listed.map((m) => [m.key, m.value]).sort()).toEqual(
          Array.from({ length: 8 }, (_, k) => [`k${k}`, `user ${u} value ${k}`]).sort(),
        );
      }
      const rows = await sql<{ user_id: string; value: string }>(
        'select user_id, value from public.memories where user_id = any($1::uuid[])',
        [users.map((u) => u.user.id)],
      );
      expect(rows).toHaveLength(writes.length);
      for (const row of rows) {
        const owner = users.findIndex((u) => u.user.id === row.user_id);
        expect(row.value.startsWith(`user ${owner} `)).toBe(true);
      }
    });

    it('the same key several times in one call: applied in the order sent, the last one wins, every clock rises', async () => {
      const { memory } = get();
      const store = storeOver(memory);
      const alice = store.forUser((await store.startSession(fresh('gc-same'))).user);
      // The first goes alone (a free slot); the rest wait for it and then go together.
      const values = ['first', 'second', 'third', 'fourth'];
      const receipts: StoreReceipt[] = await Promise.all(values.map((v) => alice.store('FACT', 'colour', v)));
      expect(store.groupCommitStats.storeCalls).toBeLessThan(values.length);
      expect(await alice.retrieve('FACT', 'colour')).toBe('fourth');
      expect(receipts.every((r) => r.applied && r.savedTo === 'database')).toBe(true);
      const times = receipts.map((r) => r.updatedAt.getTime());
      expect([...times].sort((a, b) => a - b)).toEqual(times);
    });

    it('a refused store does not take the others of its call down: each gets its own answer, and nothing of the refused one is written', async () => {
      const { memory, sql } = get();
      const store = storeOver(memory);
      const ok1 = store.forUser((await store.startSession(fresh('gc-ok1'))).user);
      const ok2 = store.forUser((await store.startSession(fresh('gc-ok2'))).user);
      const denied = store.forUser((await store.startSession(fresh('gc-denied'))).user);
      await denied.setConsent('denied');
      const ghostIdentity = fresh('gc-never-provisioned');
      const ghost = store.forUser({ id: store.userIdFor(ghostIdentity), identity: ghostIdentity });

      const blocker = ok1.store('FACT', 'first', 'alone'); // takes the one slot
      const results = await Promise.all([
        settle(ok1.store('FACT', 'a', 'ok1 a')),
        settle(denied.store('FACT', 'a', 'must not be stored')),
        settle(ok2.store('FACT', 'a', 'ok2 a')),
        settle(ghost.store('FACT', 'a', 'must not be stored either')),
        settle(ok1.store('FACT', 'b', 'ok1 b')),
      ]);
      await blocker;

      expect(store.groupCommitStats.storeBatchesRefused).toBeGreaterThanOrEqual(1);
      expect(results[0]).toMatchObject({ ok: { applied: true, savedTo: 'database' } });
      expect(results[2]).toMatchObject({ ok: { applied: true, savedTo: 'database' } });
      expect(results[4]).toMatchObject({ ok: { applied: true, savedTo: 'database' } });
      const deniedError = (results[1] as { error: unknown }).error;
      expect(deniedError).toBeInstanceOf(MemoryError);
      expect((deniedError as MemoryError).code).toBe('CONSENT_DENIED');
      const ghostError = (results[3] as { error: unknown }).error;
      expect(ghostError).toBeInstanceOf(MemoryError);
      expect((ghostError as MemoryError).code).toBe('USER_NOT_PROVISIONED');

      expect(await ok1.retrieve('FACT', 'a')).toBe('ok1 a');
      expect(await ok1.retrieve('FACT', 'b')).toBe('ok1 b');
      expect(await ok2.retrieve('FACT', 'a')).toBe('ok2 a');
      expect(await sql('select 1 from public.memories where user_id = $1', [denied.user.id])).toEqual([]);
      expect(await sql('select 1 from public.memory_users where id = $1', [ghost.user.id])).toEqual([]);
    });

    it('memory_store_batch answers each item with its own row: the clock and expiry of the row it wrote', async () => {
      const { memory, sql } = get();
      const users = await Promise.all(
        ['x', 'y', 'z'].map(async (n) => (await memory.startSession(fresh(`gc-map-${n}`))).user),
      );
      const later = new Date(Date.now() + 86_400_000).toISOString();
      // Interleaved users and keys, in an order unlike the lock order the function sorts them into.
      const items = [2, 0, 1, 0, 2, 1].map((u, i) => ({
        user_id: users[u]!.id,
        category: 'FACT',
        key: `k${5 - i}`,
        value: `item ${i}`,
        expires_at: i % 2 ? later : null,
      }));
      const answers = await rpc(rpcTransportOf(memory), 'memory_store_batch', {
        p_items: jsonArg(items),
        p_consent: 'granted',
        p_max_per_user: null,
        p_retention_days: null,
      });
      expect(answers).toHaveLength(items.length);
      for (const [i, item] of items.entries()) {
        const [row] = await sql<{ clock: string; value: string; expires_at: Date | string | null }>(
          'select clock, value, expires_at from public.memories where user_id = $1 and category = $2 and key = $3',
          [item.user_id, item.category, item.key],
        );
        expect(row!.value).toBe(item.value);
        expect(answers[i]!.clock).toBe(row!.clock);
        expect(answers[i]!.expires_at == null).toBe(item.expires_at === null);
      }
    });

    it('combined stores keep the single store rules: consent asked for, a tombstone is overtaken, an expiry is kept', async () => {
      const { memory, sql } = get();
      const asking = storeOver(memory, { consentDefault: 'ask' });
      const agreed = asking.forUser((await asking.startSession(fresh('gc-ask-yes'))).user);
      const silent = asking.forUser((await asking.startSession(fresh('gc-ask-no'))).user);
      await agreed.setConsent('granted');
      await agreed.store('FACT', 'gone', 'first');
      await agreed.forget('FACT', 'gone');
      const [tomb] = await sql<{ clock: string }>(
        "select clock from public.memory_tombstones where user_id = $1 and key = 'gone'",
        [agreed.user.id],
      );
      const expiresAt = new Date(Date.now() + 3_600_000);
      const before = asking.groupCommitStats;
      const blocker = agreed.store('FACT', 'first', 'alone');
      const results = await Promise.all([
        settle(agreed.store('FACT', 'gone', 'back again')),
        settle(silent.store('FACT', 'a', 'must wait for consent')),
        settle(agreed.store('FACT', 'expiring', 'soon gone', { expiresAt })),
      ]);
      await blocker;
      expect(asking.groupCommitStats.storeBatchesRefused - before.storeBatchesRefused).toBeGreaterThanOrEqual(1);
      expect(results[0]).toMatchObject({ ok: { applied: true, savedTo: 'database' } });
      expect((results[1] as { error: MemoryError }).error.code).toBe('CONSENT_REQUIRED');
      expect(results[2]).toMatchObject({ ok: { applied: true, expiresAt } });
      const [row] = await sql<{ clock: string }>(
        "select clock from public.memories where user_id = $1 and key = 'gone'",
        [agreed.user.id],
      );
      expect(row!.clock > tomb!.clock).toBe(true);
      expect(await agreed.retrieve('FACT', 'gone')).toBe('back again');
      expect(await sql('select 1 from public.memories where user_id = $1', [silent.user.id])).toEqual([]);
      // An expired memory is not served by a combined read either.
      await sql(
        "update public.memories set expires_at = now() - interval '1 minute' where user_id = $1 and key = 'expiring'",
        [agreed.user.id],
      );
      const reads = await Promise.all([
        agreed.retrieve('FACT', 'expiring'),
        agreed.retrieve('FACT', 'gone'),
        agreed.retrieve('FACT', 'expiring'),
      ]);
      expect(reads).toEqual([null, 'back again', null]);
    });

    it('reads that arrive together go in fewer calls, and each caller reads only its own memory', async () => {
      const { memory } = get();
      const store = storeOver(memory);
      const alice = store.forUser((await store.startSession(fresh('gc-read-a'))).user);
      const bob = store.forUser((await store.startSession(fresh('gc-read-b'))).user);
      for (let k = 0; k < 5; k += 1) {
        await alice.store('FACT', `k${k}`, `alice ${k}`);
        await bob.store('FACT', `k${k}`, `bob ${k}`);
      }
      const reads = Array.from({ length: 40 }, (_, i) => ({
        who: i % 2 ? bob : alice,
        name: i % 2 ? 'bob' : 'alice',
        key: i % 7 === 6 ? 'missing' : `k${i % 5}`,
      }));
      const answers = await Promise.all(reads.map((r) => r.who.retrieve('FACT', r.key)));
      const stats = store.groupCommitStats;
      expect(stats.reads).toBe(reads.length);
      expect(stats.readCalls).toBeLessThan(reads.length);
      reads.forEach((r, i) => {
        expect(answers[i]).toBe(r.key === 'missing' ? null : `${r.name} ${r.key.slice(1)}`);
      });
    });

    it('with a cap, reads that go together still count as uses: the memory nobody read is the one evicted', async () => {
      const { memory } = get();
      const capped = storeOver(memory, { maxPerUser: 3 });
      const alice = capped.forUser((await capped.startSession(fresh('gc-cap'))).user);
      await alice.store('FACT', 'a', 'one');
      await alice.store('FACT', 'b', 'two');
      await alice.store('FACT', 'c', 'three');
      // 'a' is the least recently used now; reading it (together with 'b') makes 'c' the one.
      const read = await Promise.all([
        alice.retrieve('FACT', 'b'),
        alice.retrieve('FACT', 'a'),
        alice.retrieve('FACT', 'a'),
        alice.retrieve('FACT', 'b'),
      ]);
      expect(read).toEqual(['two', 'one', 'one', 'two']);
      expect(capped.groupCommitStats.readCalls).toBeLessThan(4);
      const receipt = await alice.store('FACT', 'd', 'four');
      expect(receipt.evicted).toEqual([{ category: 'FACT', key: 'c' }]);
      expect((await alice.list()).map((m) => m.key).sort()).toEqual(['a', 'b', 'd']);
    });
  });
}
