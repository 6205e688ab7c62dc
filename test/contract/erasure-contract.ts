import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  EXPORT_FORMAT,
  ExportDocumentSchema,
  MemoryError,
  parseExportDocument,
  type MemoryErrorCode,
  type MemoryStore,
} from '../../memory/index.js';
import type { BackendUnderTest } from '../support/backends.js';
import { tableContents, tableDiff } from '../support/table-contents.js';

const fresh = (label: string) => `${label}-${randomUUID()}@example.com`;

async function codeOf(run: () => Promise<unknown>): Promise<MemoryErrorCode | 'none'> {
  try {
    await run();
  } catch (error) {
    if (error instanceof MemoryError) return error.code;
    throw error;
  }
  return 'none';
}

/** A user with something in every place a user's data lives: memories, a deletion, settings, an Auth link, consent, expiry. */
async function populate(backend: BackendUnderTest, identity: string, secret: string): Promise<void> {
  const memory = backend.memory;
  const handle = memory.forUser((await memory.startSession(identity)).user);
  await handle.store('FACT', 'home_city', `Lisbon of ${identity}`);
  await handle.store('PREFERENCE', 'drink', `tea for ${identity}`);
  await handle.store('FACT', 'old', 'to be forgotten');
  await handle.forget('FACT', 'old');
  await handle.saveSettings({ config: { voice: 'alloy' }, secrets: { API_KEY: secret } });
  await memory.link(identity, randomUUID());
  await backend.sql(
    "update public.memory_users set memory_consent = 'granted', memory_consent_at = now() where id = $1",
    [memory.userIdFor(identity)],
  );
  await backend.sql(
    "update public.memories set expires_at = now() + interval '30 days' where user_id = $1 and key = 'drink'",
    [memory.userIdFor(identity)],
  );
}

/** Every row, as text, that names the user (id or identity) in any table of ours. */
async function tracesOf(backend: BackendUnderTest, memory: MemoryStore, identity: string): Promise<string[]> {
  const all = await tableContents(backend);
  const id = memory.userIdFor(identity);
  return Object.entries(all).flatMap(([table, rows]) =>
    rows.filter((r) => r.includes(id) || r.includes(identity)).map((r) => `${table}: ${r}`),
  );
}

/**
 * Export and erasure (the memory lifecycle, parts 3 and 4) on every backend: what an export holds,
 * that erasure leaves nothing of the user but a content-free record and nothing of anyone else
 * changes, and that an export imports back.
 */
export function describeErasureContract(getBackend: () => BackendUnderTest): void {
  describe('export and erasure', () => {
    it('export: one document with the user, consent, memories with times and expiry, deletions, masked settings and audit; nothing of anyone else', async () => {
      const backend = getBackend();
      const { memory } = backend;
      const alice = fresh('export-alice');
      const bob = fresh('export-bob');
      await populate(backend, alice, 'sk-alice-export-secret');
      await populate(backend, bob, 'sk-bob-export-secret');

      const doc = await memory.exportUser(alice);
      expect(ExportDocumentSchema.parse(doc)).toEqual(doc);
      expect(doc).toMatchObject({
        format: EXPORT_FORMAT,
        version: 1,
        identity: alice,
        userId: memory.userIdFor(alice),
        namespace: memory.namespace,
        user: { sessionCount: 1, authUserId: expect.any(String) },
        consent: { state: 'granted', at: expect.any(String) },
        deletions: [{ category: 'FACT', key: 'old', at: expect.any(String) }],
        pendingJournal: [],
      });
      expect(doc.memories.map((m) => [m.category, m.key, m.value, m.expiresAt === null])).toEqual([
        ['FACT', 'home_city', `Lisbon of ${alice}`, true],
        ['PREFERENCE', 'drink', `tea for ${alice}`, false],
      ]);
      expect(Date.parse(doc.memories[1]!.expiresAt!)).toBeGreaterThan(Date.now());
      expect(doc.settings).toEqual([
        {
          tenant: 'default',
          config: { voice: 'alloy' },
          secrets: { API_KEY: expect.stringMatching(/^\*{8} \(encrypted, key [0-9a-f]{16}\)$/) },
          version: 1,
          updatedAt: expect.any(String),
        },
      ]);
      expect(doc.audit.map((a) => a.action)).toEqual(expect.arrayContaining(['link.set']));
      const text = JSON.stringify(doc);
      expect(text).not.toContain('sk-alice-export-secret');
      expect(text).not.toContain(bob);
      expect(text).not.toContain(memory.userIdFor(bob));
      // The export itself was audited (after it was read).
      const again = await memory.exportUser(alice);
      expect(again.audit.at(-1)).toMatchObject({ action: 'export', component: expect.any(String) });
      // An identity nothing is stored for: a typed error, and nothing written about it.
      const nobody = fresh('export-nobody');
      expect(await codeOf(() => memory.exportUser(nobody))).toBe('USER_NOT_FOUND');
      expect(await tracesOf(backend, memory, nobody)).toEqual([]);
    });

    it('erase: nothing of the user is left but one audit record without user id or content; nobody else changes', async () => {
      const backend = getBackend();
      const { memory } = backend;
      const alice = fresh('erase-alice');
      const bob = fresh('erase-bob');
      await populate(backend, alice, 'sk-alice-erase-secret');
      await populate(backend, bob, 'sk-bob-erase-secret');
      const before = await tableContents(backend);

      const report = await memory.eraseUser(alice);
      expect(report).toMatchObject({
        identity: alice,
        userId: memory.userIdFor(alice),
        database: { user: true, memories: 2, tombstones: 1, settings: 1, audit: expect.any(Number) },
      });
      expect(report.database.audit).toBeGreaterThan(0);

      const after = await tableContents(backend);
      const diff = tableDiff(before, after);
      // Everything removed was alice's; the one row added is the erasure record.
      for (const [table, rows] of Object.entries(diff.removed))
        for (const row of rows) expect(row, table).toContain(memory.userIdFor(alice));
      expect(Object.keys(diff.removed).sort()).toEqual(
        expect.arrayContaining([
          'memories',
          'memory_audit_log',
          'memory_settings',
          'memory_tombstones',
          'memory_users',
        ]),
      );
      expect(Object.keys(diff.added)).toEqual(['memory_audit_log']);
      expect(diff.added.memory_audit_log).toHaveLength(1);
      const record = JSON.parse(diff.added.memory_audit_log![0]!) as Record<string, unknown>;
      expect(record).toMatchObject({ user_id: null, tenant_id: null, action: 'erase', component: expect.any(String) });
      expect(Object.keys(record.detail as object).sort()).toEqual(['clock', 'marker']);
      expect((record.detail as { marker: string }).marker).toMatch(/^[0-9a-f]{64}$/);
      expect(await tracesOf(backend, memory, alice)).toEqual([]);
      expect(JSON.stringify(after)).not.toContain('sk-alice-erase-secret');

      // Bob's rows are exactly as they were.
      const bobRows = (c: Record<string, string[]>) =>
        Object.values(c)
          .flat()
          .filter((r) => r.includes(memory.userIdFor(bob)))
          .sort();
      expect(bobRows(after)).toEqual(bobRows(before));
      expect(bobRows(after).length).toBeGreaterThan(4);

      // inspect and export show nothing; a second erasure finds nothing and writes nothing.
      const profile = await memory.profile(alice);
      expect(profile).toMatchObject({ user: null, memoryCount: 0, settings: [], audit: [] });
      expect(await memory.forIdentity(alice).retrieve('FACT', 'home_city')).toBeNull();
      expect(await codeOf(() => memory.exportUser(alice))).toBe('USER_NOT_FOUND');
      const rowsBefore = await tableContents(backend);
      expect(await codeOf(() => memory.eraseUser(alice))).toBe('USER_NOT_FOUND');
      expect(await tableContents(backend)).toEqual(rowsBefore);
    });

    it('export, erase, import: the memories come back (expired ones not), as a new user, and nobody else changes', async () => {
      const backend = getBackend();
      const { memory } = backend;
      const alice = fresh('trip-alice');
      const bob = fresh('trip-bob');
      await populate(backend, alice, 'sk-alice-trip');
      await populate(backend, bob, 'sk-bob-trip');
      await memory.forIdentity(alice).store('FACT', 'gone', 'expired already');
      await backend.sql(
        "update public.memories set expires_at = now() - interval '1 day' where user_id = $1 and key = 'gone'",
        [memory.userIdFor(alice)],
      );
      const bobBefore = JSON.stringify(await memory.exportUser(bob).then((d) => d.memories));

      // The document goes through JSON text, as it does through a file.
      const doc = parseExportDocument(JSON.parse(JSON.stringify(await memory.exportUser(alice))), 'export');
      await memory.eraseUser(alice);
      const now = Date.now();
      const live = doc.memories.filter((m) => m.expiresAt === null || Date.parse(m.expiresAt) > now);
      expect(live.map((m) => m.key).sort()).toEqual(['drink', 'home_city']);
      await memory.provision(alice);
      expect(
        await memory
          .forIdentity(alice)
          .storeMany(live.map((m) => ({ ...m, expiresAt: m.expiresAt === null ? undefined : new Date(m.expiresAt) }))),
      ).toBe(2);

      const back = (await memory.exportUser(alice)).memories;
      expect(back.map((m) => [m.category, m.key, m.value]).sort()).toEqual(
        live.map((m) => [m.category, m.key, m.value]).sort(),
      );
      expect((await memory.profile(alice)).user?.sessionCount).toBe(0); // a new user row
      const bobAfter = await memory.exportUser(bob);
      expect(JSON.stringify(bobAfter.memories)).toBe(bobBefore);
    });

    it('import refuses a malformed export document before anything is written', () => {
      const good = {
        format: EXPORT_FORMAT,
        version: 1,
        exportedAt: new Date().toISOString(),
        identity: 'x@example.com',
        userId: randomUUID(),
        namespace: randomUUID(),
        user: null,
        consent: { state: null, at: null },
        memories: [],
        deletions: [],
        settings: [],
        audit: [],
        pendingJournal: [],
      };
      expect(parseExportDocument(good, 'doc').identity).toBe('x@example.com');
      for (const bad of [
        { ...good, version: 2 },
        { ...good, format: 'something-else' },
        { ...good, extra: true },
        { ...good, memories: [{ category: 'FACT', key: 'k', value: 1 }] },
        { ...good, consent: { state: 'maybe', at: null } },
        { ...good, exportedAt: 'yesterday' },
      ]) {
        expect(() => parseExportDocument(bad, 'doc')).toThrow(MemoryError);
      }
    });
  });
}
