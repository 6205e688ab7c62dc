import fs from 'node:fs';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../memory/defaults.js';
import { openMemory, type MemoryStore } from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import { tempDataDir } from '../support/backends.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

const fresh = (label: string) => `${label}-${randomUUID()}@example.com`;
const DAY_MS = 24 * 60 * 60 * 1000;

/** A write clock of the moment `ms`, as a journal writer makes it. */
const clockAt = (ms: number, seq = 0) => `${String(ms).padStart(15, '0')}.${String(seq).padStart(10, '0')}.test`;

/**
 * The lifecycle where it meets the journal (writes made while the database was unreachable) and
 * the database's clock, on the backends with raw SQL and a journal: real PostgreSQL and PGlite.
 */
for (const kind of ['postgres', 'embedded'] as const) {
  describe(`lifecycle and the journal: ${kind}`, () => {
    let db: TestDatabase | undefined;
    let dataDir: string;
    let memory: MemoryStore;

    beforeAll(async () => {
      dataDir = tempDataDir('lifejournal');
      if (kind === 'postgres') {
        db = await createTestDatabase('lifejournal');
        memory = await openMemory({ env: {}, databaseUrl: db.url, dataDir, backgroundSync: false });
      } else {
        memory = await openMemory({ env: {}, dataDir, serve: false, backgroundSync: false });
      }
    });
    afterAll(async () => {
      await memory?.close();
      await db?.drop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    });

    it('a journaled store made before the denial is refused on replay and reported, even after consent is granted again', async () => {
      const identity = fresh('replay-deny');
      const user = (await memory.startSession(identity)).user;
      const handle = memory.forUser(user);
      const before = Date.now() - 60_000;
      await memory.journal!.append({
        op: 'store',
        userId: user.id,
        identity,
        category: 'FACT',
        key: 'before',
        value: 'written offline before the denial',
        clock: clockAt(before),
      });
      await handle.setConsent('denied');
      let report = await memory.sync();
      expect(report.applied).toBe(0);
      expect(report.problems).toEqual([
        expect.objectContaining({
          kind: 'rejected',
          reason: expect.stringContaining('memory consent denied') as unknown,
        }),
      ]);
      expect(await handle.list()).toEqual([]);

      // The same entry, replayed after the caller asked to be remembered again, is still refused:
      // it was made before they withdrew consent.
      await handle.setConsent('granted');
      await memory.journal!.append({
        op: 'store',
        userId: user.id,
        identity,
        category: 'FACT',
        key: 'before',
        value: 'written offline before the denial',
        clock: clockAt(before, 1),
      });
      report = await memory.sync();
      expect(report.problems).toEqual([
        expect.objectContaining({
          kind: 'rejected',
          reason: expect.stringContaining('before they asked not to be remembered') as unknown,
        }),
      ]);
      // A write made after the new grant replays.
      await memory.journal!.append({
        op: 'store',
        userId: user.id,
        identity,
        category: 'FACT',
        key: 'after',
        value: 'written after the grant',
        clock: clockAt(Date.now() + 1000),
      });
      report = await memory.sync();
      expect(report).toMatchObject({ applied: 1, problems: [] });
      expect((await handle.list()).map((m) => m.key)).toEqual(['after']);
    });

    it('a journaled store older than the journal maximum age is set aside, not applied; an old deletion still replays', async () => {
      const identity = fresh('replay-old');
      const user = (await memory.startSession(identity)).user;
      await memory.journal!.append({
        op: 'store',
        userId: user.id,
        identity,
        category: 'FACT',
        key: 'ancient',
        value: 'too old',
        clock: clockAt(Date.now() - (DEFAULTS.journalMaxAgeDays + 1) * DAY_MS),
      });
      await memory.journal!.append({
        op: 'forget',
        userId: user.id,
        identity,
        category: 'FACT',
        key: 'old-deletion',
        clock: clockAt(Date.now() - (DEFAULTS.journalMaxAgeDays + 1) * DAY_MS),
      });
      const report = await memory.sync();
      expect(report.applied).toBe(1);
      expect(report.problems).toEqual([
        expect.objectContaining({ kind: 'rejected', reason: expect.stringContaining('maximum age') as unknown }),
      ]);
      expect(await memory.forUser(user).retrieve('FACT', 'ancient')).toBeNull();
    });

    it('a pending store with an expiry is served until it expires, and not after; it carries its expiry to the database', async () => {
      const identity = fresh('pending-expiry');
      const user = (await memory.startSession(identity)).user;
      const handle = memory.forUser(user);
      await handle.store('TASK', 'visit', 'old value in the database');
      const base = { op: 'store' as const, userId: user.id, identity, category: 'TASK' };
      const soon = new Date(Date.now() + 60 * 60 * 1000).toISOString();
      await memory.journal!.append({
        ...base,
        key: 'trip',
        value: 'pending trip',
        clock: clockAt(Date.now() + 1),
        expiresAt: soon,
      });
      // A newer pending write of 'visit' that has expired hides the database's older value.
      await memory.journal!.append({
        ...base,
        key: 'visit',
        value: 'pending visit',
        clock: clockAt(Date.now() + 2),
        expiresAt: new Date(Date.now() - 1).toISOString(),
      });
      expect(await handle.retrieve('TASK', 'trip')).toBe('pending trip');
      expect(await handle.retrieve('TASK', 'visit')).toBeNull();
      expect((await handle.list()).map((m) => m.key)).toEqual(['trip']);
      expect((await memory.startSession(identity)).memories.map((m) => m.key)).toEqual(['trip']);
      expect((await handle.search('visit trip')).map((m) => m.key)).toEqual(['trip']);

      const report = await memory.sync();
      expect(report).toMatchObject({ applied: 2, problems: [] });
      const rows = await transportOf(memory).query<{ key: string; expires_at: Date | string }>(
        'select key, expires_at from public.memories where user_id = $1 order by key',
        [user.id],
      );
      expect(rows.map((r) => [r.key, new Date(r.expires_at).getTime() > Date.now()])).toEqual([
        ['trip', true],
        ['visit', false],
      ]);
      expect((await handle.list()).map((m) => m.key)).toEqual(['trip']);
    });

    it('expiry is exact to the database clock: expires_at = now() is not served, now() + 1 ms is', async () => {
      const identity = fresh('boundary');
      const user = (await memory.startSession(identity)).user;
      await memory.forUser(user).store('FACT', 'edge', 'on the edge');
      const args = [user.id, 'FACT', 'edge'];
      // One transaction: now() is the same instant for every statement in it.
      const seen = await transportOf(memory).transaction(async (tx) => {
        const read = async () => ({
          retrieve: (await tx.query<{ v: string | null }>('select public.memory_retrieve($1, $2, $3) as v', args))[0]!
            .v,
          list: (await tx.query('select key from public.memory_list($1, $2, 10)', [user.id, 'FACT'])).length,
          search: (await tx.query("select key from public.memory_search($1, 'edge')", [user.id])).length,
        });
        await tx.query("update public.memories set expires_at = now() + interval '1 millisecond' where user_id = $1", [
          user.id,
        ]);
        const justBefore = await read();
        await tx.query('update public.memories set expires_at = now() where user_id = $1', [user.id]);
        const atTheMoment = await read();
        return { justBefore, atTheMoment };
      });
      expect(seen.justBefore).toEqual({ retrieve: 'on the edge', list: 1, search: 1 });
      expect(seen.atTheMoment).toEqual({ retrieve: null, list: 0, search: 0 });
    });
  });
}
