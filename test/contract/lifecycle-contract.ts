import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  MemoryError,
  MemoryStore,
  TOMBSTONE_MAX_AGE_DAYS,
  type Lifecycle,
  type MemoryErrorCode,
} from '../../memory/index.js';
import { rpcTransportOf } from '../../memory/store.js';
import { recallMemoriesForTurn } from '../../plugins/index.js';
import type { BackendUnderTest } from '../support/backends.js';

/** A fresh identity per test, so tests that share one database never share a user. */
const fresh = (label: string) => `${label}-${randomUUID()}@example.com`;

async function expectCode(promise: Promise<unknown>, code: MemoryErrorCode): Promise<MemoryError> {
  const caught = await promise.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(caught, `expected a MemoryError ${code}`).toBeInstanceOf(MemoryError);
  expect((caught as MemoryError).code).toBe(code);
  return caught as MemoryError;
}

/**
 * A second store over the same backend (the very same transport) with another lifecycle: a
 * deployment with MEMORY_CONSENT_DEFAULT, MEMORY_RETENTION_DAYS or MEMORY_MAX_PER_USER set. Never
 * closed (the backend's own store owns the transport).
 */
function deployment(memory: MemoryStore, lifecycle: Partial<Lifecycle>): MemoryStore {
  return new MemoryStore(rpcTransportOf(memory), { namespace: memory.namespace, maxValueBytes: 16 * 1024, lifecycle });
}

/**
 * Consent, retention and the cap (issue 12, parts 1 and 2), on every backend of the store contract.
 * Expired rows are made with the database's clock (raw SQL moves expires_at or updated_at), never
 * by waiting.
 */
export function describeLifecycleContract(get: () => BackendUnderTest): void {
  describe('lifecycle: consent', () => {
    it('denied: erases what was stored, stores nothing through store or storeMany, audits; granted again works; others untouched', async () => {
      const { memory, sql } = get();
      const alice = memory.forUser((await memory.startSession(fresh('deny'))).user);
      const bob = memory.forUser((await memory.startSession(fresh('deny-other'))).user);
      await alice.store('FACT', 'a', 'one');
      await alice.store('FACT', 'b', 'two');
      await alice.forget('FACT', 'b'); // a tombstone
      await bob.store('FACT', 'a', 'bob keeps this');

      const change = await alice.setConsent('denied');
      expect(change).toMatchObject({ consent: 'denied', previous: null, erased: 1 });
      expect(await alice.list()).toEqual([]);
      expect(await sql('select 1 from public.memories where user_id = $1', [alice.user.id])).toEqual([]);
      expect(await sql('select 1 from public.memory_tombstones where user_id = $1', [alice.user.id])).toEqual([]);

      await expectCode(alice.store('FACT', 'c', 'three'), 'CONSENT_DENIED');
      await expectCode(alice.storeMany([{ category: 'FACT', key: 'd', value: 'four' }]), 'CONSENT_DENIED');
      // The deployment default does not override what the caller said.
      await expectCode(deployment(memory, {}).forUser(alice.user).store('FACT', 'e', 'five'), 'CONSENT_DENIED');
      expect(await sql('select 1 from public.memories where user_id = $1', [alice.user.id])).toEqual([]);
      const session = await memory.startSession(alice.user.identity);
      expect(session.consent).toBe('denied');
      expect(session.memories).toEqual([]);

      // Bob is untouched.
      expect(await bob.retrieve('FACT', 'a')).toBe('bob keeps this');
      expect((await memory.startSession(bob.user.identity)).consent).toBe('granted');

      const again = await alice.setConsent('granted');
      expect(again).toMatchObject({ consent: 'granted', previous: 'denied', erased: 0 });
      expect((await alice.store('FACT', 'c', 'three')).applied).toBe(true);
      expect(await alice.retrieve('FACT', 'c')).toBe('three');
      expect((await memory.startSession(alice.user.identity)).consent).toBe('granted');

      const audit = await sql<{ action: string; detail: Record<string, unknown> }>(
        "select action, detail from public.memory_audit_log where user_id = $1 and action like 'consent.%' order by id",
        [alice.user.id],
      );
      expect(audit).toEqual([
        { action: 'consent.denied', detail: { previous: null, erased: 1, tombstones: 1 } },
        { action: 'consent.granted', detail: { previous: 'denied', erased: 0, tombstones: 0 } },
      ]);
    });

    it('a denial recorded before the first session (the CLI) provisions the user, and their first session is denied', async () => {
      const { memory } = get();
      const identity = fresh('deny-first');
      expect(await memory.setConsent(identity, 'denied')).toMatchObject({ consent: 'denied', previous: null });
      const session = await memory.startSession(identity);
      expect(session.consent).toBe('denied');
      await expectCode(memory.forUser(session.user).store('FACT', 'x', 'y'), 'CONSENT_DENIED');
    });

    it('MEMORY_CONSENT_DEFAULT=ask: nothing is stored until the caller agrees; denied default likewise', async () => {
      const { memory, sql } = get();
      const asking = deployment(memory, { consentDefault: 'ask' });
      const session = await asking.startSession(fresh('ask'));
      expect(session.consent).toBe('ask');
      const carol = asking.forUser(session.user);
      await expectCode(carol.store('FACT', 'a', 'one'), 'CONSENT_REQUIRED');
      await expectCode(carol.storeMany([{ category: 'FACT', key: 'a', value: 'one' }]), 'CONSENT_REQUIRED');
      expect(await sql('select 1 from public.memories where user_id = $1', [carol.user.id])).toEqual([]);
      await carol.setConsent('granted');
      expect((await asking.startSession(carol.user.identity)).consent).toBe('granted');
      expect((await carol.store('FACT', 'a', 'one')).applied).toBe(true);

      const closed = deployment(memory, { consentDefault: 'denied' });
      const dave = closed.forUser((await closed.startSession(fresh('default-denied'))).user);
      await expectCode(dave.store('FACT', 'a', 'one'), 'CONSENT_DENIED');
      await dave.setConsent('granted');
      expect((await dave.store('FACT', 'a', 'one')).applied).toBe(true);
    });
  });

  describe('lifecycle: expiry and retention', () => {
    it('an expired memory is served by no read path: retrieve, list, search, session start, per-turn recall', async () => {
      const { memory, sql } = get();
      const identity = fresh('expiry');
      const erin = memory.forUser((await memory.startSession(identity)).user);
      const inAnHour = new Date(Date.now() + 60 * 60 * 1000);
      const receipt = await erin.store('TASK', 'flight', 'flight to Lisbon on Friday', { expiresAt: inAnHour });
      expect(receipt.expiresAt).toEqual(inAnHour);
      await erin.store('FACT', 'city', 'lives in Porto near the Lisbon road');

      // Live until it expires, with its expiry.
      expect(await erin.retrieve('TASK', 'flight')).toBe('flight to Lisbon on Friday');
      expect((await erin.list()).find((m) => m.key === 'flight')?.expiresAt).toEqual(inAnHour);
      expect((await erin.search('Lisbon flight')).map((m) => m.key)).toContain('flight');

      // Now expired, by the database's clock: a millisecond ago.
      await sql(
        "update public.memories set expires_at = now() - interval '1 millisecond' where user_id = $1 and key = 'flight'",
        [erin.user.id],
      );
      expect(await erin.retrieve('TASK', 'flight')).toBeNull();
      expect((await erin.list()).map((m) => m.key)).toEqual(['city']);
      expect((await erin.list({ category: 'TASK' })).map((m) => m.key)).toEqual([]);
      expect((await erin.search('Lisbon flight')).map((m) => m.key)).toEqual(['city']);
      expect((await memory.startSession(identity)).memories.map((m) => m.key)).toEqual(['city']);
      const recalled = await recallMemoriesForTurn(erin, 'when is my flight to Lisbon?', { budgetMs: 60_000 });
      expect(recalled.status === 'found' ? recalled.memories.map((m) => m.key) : []).not.toContain('flight');
      expect(recalled.status).not.toBe('error');

      // Storing it again makes it live again (a new value, without the old expiry).
      await erin.store('TASK', 'flight', 'flight to Lisbon next month');
      expect(await erin.retrieve('TASK', 'flight')).toBe('flight to Lisbon next month');
      expect((await erin.list({ category: 'TASK' }))[0]!.expiresAt).toBeUndefined();
    });

    it('a past or invalid expiresAt is refused and nothing is written', async () => {
      const { memory, sql } = get();
      const frank = memory.forUser((await memory.startSession(fresh('past'))).user);
      await expectCode(frank.store('FACT', 'a', 'one', { expiresAt: new Date(Date.now() - 1) }), 'INVALID_OPTION');
      await expectCode(frank.store('FACT', 'a', 'one', { expiresAt: new Date(Number.NaN) }), 'INVALID_OPTION');
      await expectCode(
        frank.storeMany([
          { category: 'FACT', key: 'a', value: 'one' },
          { category: 'FACT', key: 'b', value: 'two', expiresAt: new Date(0) },
        ]),
        'INVALID_OPTION',
      );
      expect(await sql('select 1 from public.memories where user_id = $1', [frank.user.id])).toEqual([]);
    });

    it('MEMORY_RETENTION_DAYS: a memory not updated for that long is not served', async () => {
      const { memory, sql } = get();
      const keeping = deployment(memory, { retentionDays: 30 });
      const identity = fresh('retention');
      const gina = keeping.forUser((await keeping.startSession(identity)).user);
      await gina.store('FACT', 'old', 'an old thing about tea');
      await gina.store('FACT', 'recent', 'a recent thing about tea');
      await sql(
        "update public.memories set updated_at = now() - interval '30 days' - interval '1 millisecond' where user_id = $1 and key = 'old'",
        [gina.user.id],
      );
      await sql(
        "update public.memories set updated_at = now() - interval '29 days' where user_id = $1 and key = 'recent'",
        [gina.user.id],
      );
      expect(await gina.retrieve('FACT', 'old')).toBeNull();
      expect(await gina.retrieve('FACT', 'recent')).toBe('a recent thing about tea');
      expect((await gina.list()).map((m) => m.key)).toEqual(['recent']);
      expect((await gina.search('tea')).map((m) => m.key)).toEqual(['recent']);
      expect((await keeping.startSession(identity)).memories.map((m) => m.key)).toEqual(['recent']);
      // A deployment without retention still serves it.
      expect(await memory.forUser(gina.user).retrieve('FACT', 'old')).toBe('an old thing about tea');
    });

    it('purge removes expired memories (leaving tombstones, audited per user) and tombstones older than any journal entry', async () => {
      const { memory, sql } = get();
      const keeping = deployment(memory, { retentionDays: 30 });
      const hana = keeping.forUser((await keeping.startSession(fresh('purge'))).user);
      const ivan = keeping.forUser((await keeping.startSession(fresh('purge-other'))).user);
      await hana.store('FACT', 'expired', 'x', { expiresAt: new Date(Date.now() + 60_000) });
      await hana.store('FACT', 'stale', 'y');
      await hana.store('FACT', 'kept', 'z', { expiresAt: new Date(Date.now() + 60_000) });
      await ivan.store('FACT', 'kept', 'w');
      await hana.forget('FACT', 'gone-long-ago');
      await hana.forget('FACT', 'gone-recently');
      await sql(
        "update public.memories set expires_at = now() - interval '1 millisecond' where user_id = $1 and key = 'expired'",
        [hana.user.id],
      );
      await sql(
        "update public.memories set updated_at = now() - interval '31 days' where user_id = $1 and key = 'stale'",
        [hana.user.id],
      );
      const old = Date.now() - (TOMBSTONE_MAX_AGE_DAYS + 1) * 24 * 60 * 60 * 1000;
      await sql("update public.memory_tombstones set clock = $2 where user_id = $1 and key = 'gone-long-ago'", [
        hana.user.id,
        `${String(old).padStart(15, '0')}.0000000000.server`,
      ]);

      const batches: number[] = [];
      const report = await keeping.purge({ batchSize: 1, onBatch: (r) => batches.push(r.batches) });
      expect(report.memories).toBeGreaterThanOrEqual(2);
      expect(report.tombstones).toBeGreaterThanOrEqual(1);
      expect(report.batches).toBeGreaterThanOrEqual(3); // one row per batch here, then a short one
      expect(batches).toEqual(Array.from({ length: report.batches }, (_, i) => i + 1));

      const left = await sql<{ key: string }>('select key from public.memories where user_id = $1 order by key', [
        hana.user.id,
      ]);
      expect(left).toEqual([{ key: 'kept' }]);
      expect(await ivan.retrieve('FACT', 'kept')).toBe('w');
      const tombstones = await sql<{ key: string }>(
        'select key from public.memory_tombstones where user_id = $1 order by key',
        [hana.user.id],
      );
      expect(tombstones.map((t) => t.key)).toEqual(['expired', 'gone-recently', 'stale']);
      const audit = await sql<{ detail: { memories: number } }>(
        "select detail from public.memory_audit_log where user_id = $1 and action = 'memory.expired'",
        [hana.user.id],
      );
      expect(audit.reduce((n, a) => n + a.detail.memories, 0)).toBe(2);
      expect(
        await sql("select 1 from public.memory_audit_log where user_id = $1 and action = 'memory.expired'", [
          ivan.user.id,
        ]),
      ).toEqual([]);
      // Nothing left to do.
      expect(await keeping.purge()).toMatchObject({ batches: 1 });
    });
  });

  describe('lifecycle: the per-user cap', () => {
    it('evicts the least recently used, says which in the receipt, audits, and leaves other users alone', async () => {
      const { memory, sql } = get();
      const capped = deployment(memory, { maxPerUser: 3 });
      const jane = capped.forUser((await capped.startSession(fresh('cap'))).user);
      const kim = capped.forUser((await capped.startSession(fresh('cap-other'))).user);
      for (const key of ['k1', 'k2', 'k3']) await kim.store('FACT', key, key);
      for (const key of ['a', 'b', 'c']) expect((await jane.store('FACT', key, key)).evicted).toBeUndefined();
      // A read counts as a use: a is now more recently used than b.
      expect(await jane.retrieve('FACT', 'a')).toBe('a');
      const receipt = await jane.store('FACT', 'd', 'd');
      expect(receipt.applied).toBe(true);
      expect(receipt.evicted).toEqual([{ category: 'FACT', key: 'b' }]);
      expect((await jane.list()).map((m) => m.key).sort()).toEqual(['a', 'c', 'd']);
      // Replacing a stored key evicts nothing.
      expect((await jane.store('FACT', 'c', 'c2')).evicted).toBeUndefined();
      // An expired memory goes first, and is not reported (it was not served anyway).
      await sql(
        "update public.memories set expires_at = now() - interval '1 millisecond' where user_id = $1 and key = 'd'",
        [jane.user.id],
      );
      expect((await jane.store('FACT', 'e', 'e')).evicted).toBeUndefined();
      expect((await jane.list()).map((m) => m.key).sort()).toEqual(['a', 'c', 'e']);
      expect((await kim.list()).map((m) => m.key).sort()).toEqual(['k1', 'k2', 'k3']);
      const audit = await sql<{ detail: Record<string, unknown> }>(
        "select detail from public.memory_audit_log where user_id = $1 and action = 'memory.evicted' order by id",
        [jane.user.id],
      );
      expect(audit.map((a) => a.detail)).toEqual([
        { cap: 3, evicted: 1 },
        { cap: 3, evicted: 1 },
      ]);
      // An evicted memory left a tombstone: a journal replay older than the eviction cannot bring it back.
      expect(
        await sql("select key from public.memory_tombstones where user_id = $1 and key = 'b'", [jane.user.id]),
      ).toEqual([{ key: 'b' }]);
    });

    it('100 concurrent stores at the cap leave exactly the cap', async () => {
      const { memory, sql } = get();
      const capped = deployment(memory, { maxPerUser: 10 });
      const lee = capped.forUser((await capped.startSession(fresh('cap-race'))).user);
      const receipts = await Promise.all(
        Array.from({ length: 100 }, (_, i) => lee.store('FACT', `k${String(i).padStart(3, '0')}`, `v${i}`)),
      );
      const rows = await sql<{ n: string | number }>('select count(*) as n from public.memories where user_id = $1', [
        lee.user.id,
      ]);
      expect(Number(rows[0]!.n)).toBe(10);
      expect(receipts.every((r) => r.applied)).toBe(true);
      expect(receipts.reduce((n, r) => n + (r.evicted?.length ?? 0), 0)).toBe(90);
    });
  });
}
