import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MemoryError, type MemoryErrorCode, type UserMemory } from '../../memory/index.js';
import type { BackendUnderTest } from '../support/backends.js';

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

/**
 * Ranked search on every backend: one user's memories only, ranked with a score, the typed
 * errors of bad queries, and never a value that was deleted or replaced.
 */
export function describeSearchContract(get: () => BackendUnderTest): void {
  describe('search', () => {
    async function user(label: string, memories: Array<[string, string, string]> = []): Promise<UserMemory> {
      const memory = get().memory;
      const handle = memory.forUser((await memory.startSession(fresh(label))).user);
      for (const [category, key, value] of memories) await handle.store(category, key, value);
      return handle;
    }

    it('finds memories by words of their key or value, typos and partial words included, best first with a score', async () => {
      const alice = await user('search-alice', [
        ['PERSONAL', 'dentist_name', 'Dr. Müller at Bahnhofstrasse 5'],
        ['PREFERENCE', 'favorite_color', 'teal'],
        ['FACT', 'home_city', 'Lisbon, Portugal'],
        ['TASK', 'call_mother', 'Call mum on Sunday evening'],
        ['FACT', 'clinic', '田中歯科 電話 03-1234-5678'],
        ['FACT', 'hometown', 'Москва, у реки'],
      ]);
      const top = async (query: string) => (await alice.search(query, { limit: 3 }))[0]?.key;
      expect(await top('what is the name of my dentist?')).toBe('dentist_name'); // a word of the key
      expect(await top('dentst')).toBe('dentist_name'); // a typo
      expect(await top('Müller')).toBe('dentist_name'); // a word of the value only
      expect(await top('favorite colour')).toBe('favorite_color');
      expect(await top('lisb')).toBe('home_city'); // a partial word
      expect(await top('mother')).toBe('call_mother');
      expect(await top('田中歯科')).toBe('clinic');
      expect(await top('москва')).toBe('hometown');

      const results = await alice.search('dentist Müller', { limit: 10 });
      expect(results[0]).toMatchObject({
        category: 'PERSONAL',
        key: 'dentist_name',
        value: 'Dr. Müller at Bahnhofstrasse 5',
      });
      expect(results[0]!.score).toBeGreaterThan(0);
      expect(results[0]!.updatedAt).toBeInstanceOf(Date);
      const scores = results.map((r) => r.score);
      expect(scores).toEqual([...scores].sort((a, b) => b - a));

      expect(await alice.search('zzqx vvkw')).toEqual([]);
      expect((await alice.search('dentist', { category: 'FACT' })).map((r) => r.key)).not.toContain('dentist_name');
      expect((await alice.search('dentist', { category: 'PERSONAL' })).map((r) => r.key)).toEqual(['dentist_name']);
    });

    it('honours the limit', async () => {
      const many = await user(
        'search-many',
        Array.from({ length: 12 }, (_, i): [string, string, string] => [
          'FACT',
          `pet_${i}`,
          `a pet hamster number ${i}`,
        ]),
      );
      expect(await many.search('hamster', { limit: 5 })).toHaveLength(5);
      expect(await many.search('hamster')).toHaveLength(10);
      expect(await many.search('hamster', { limit: 0 })).toEqual([]);
    });

    it("never returns another user's memory: prefix siblings and users whose memories hold every word of the query", async () => {
      const base = `iso-${randomUUID()}`;
      const memory = get().memory;
      const identities = [base, `${base}-corp`, `${base}%`, `${base}_`, `${base}:1`, `${base}:10`, `x${base}`];
      const handles = [];
      for (const identity of identities) {
        const handle = memory.forUser((await memory.startSession(identity)).user);
        // Every user holds every word of the query, under the same keys.
        await handle.store('FACT', 'dentist_name', `dentist Müller for ${identity}`);
        await handle.store('PREFERENCE', 'favorite_color', `teal for ${identity}`);
        handles.push(handle);
      }
      const empty = memory.forUser((await memory.startSession(`${base}-empty`)).user);
      expect(await empty.search('dentist Müller teal favorite color')).toEqual([]);
      for (const [i, handle] of handles.entries()) {
        const found = await handle.search('dentist Müller teal favorite color', { limit: 100 });
        expect(found.map((m) => m.value).sort()).toEqual(
          [`dentist Müller for ${identities[i]}`, `teal for ${identities[i]}`].sort(),
        );
      }
    });

    it('never serves a deleted or replaced value', async () => {
      const bob = await user('search-bob', [['FACT', 'car', 'a red bicycle named Rosinante']]);
      expect((await bob.search('bicycle')).map((m) => m.value)).toEqual(['a red bicycle named Rosinante']);
      await bob.store('FACT', 'car', 'a blue bicycle named Dulcinea');
      expect((await bob.search('bicycle')).map((m) => m.value)).toEqual(['a blue bicycle named Dulcinea']);
      expect(await bob.search('Rosinante')).toEqual([]);
      await bob.forget('FACT', 'car');
      expect(await bob.search('bicycle')).toEqual([]);
    });

    it('storeMany stores all or none, in one statement', async () => {
      const memory = get().memory;
      const erin = await user('store-many');
      const before = memory.statementCount;
      expect(
        await erin.storeMany([
          { category: 'FACT', key: 'a', value: 'one' },
          { category: 'TASK', key: 'b', value: 'two' },
        ]),
      ).toBe(2);
      expect(memory.statementCount - before).toBe(1);
      expect((await erin.search('two'))[0]?.key).toBe('b');
      const bad: Array<[Array<{ category: string; key: string; value: string }>, MemoryErrorCode]> = [
        [
          [
            { category: 'FACT', key: 'c', value: 'x' },
            { category: 'fact', key: 'd', value: 'y' },
          ],
          'INVALID_CATEGORY',
        ],
        [
          [
            { category: 'FACT', key: 'c', value: 'x' },
            { category: 'FACT', key: 'c', value: 'y' },
          ],
          'INVALID_KEY',
        ],
        [[{ category: 'FACT', key: 'c', value: 'x'.repeat(16 * 1024 + 1) }], 'INVALID_VALUE'],
      ];
      for (const [entries, code] of bad) expect(await codeOf(() => erin.storeMany(entries))).toBe(code);
      // Refused by the database after the checks (a user never provisioned): nothing is left behind.
      const ghost = memory.forIdentity(fresh('ghost-many'));
      expect(await codeOf(() => ghost.storeMany([{ category: 'FACT', key: 'c', value: 'x' }]))).toBe(
        'USER_NOT_PROVISIONED',
      );
      // A later entry that the table refuses undoes the earlier ones of the same call.
      await expect(
        get().sql(
          `select public.memory_store_many($1, '[{"category":"FACT","key":"e","value":"x"},{"category":"bad","key":"f","value":"y"}]'::jsonb)`,
          [erin.user.id],
        ),
      ).rejects.toThrow();
      expect((await erin.list()).map((m) => m.key).sort()).toEqual(['a', 'b']);
      expect(await get().sql('select 1 from public.memories where user_id = $1', [ghost.user.id])).toEqual([]);
    });

    it('bad input is a typed error before the database, or a safe search: never a database error', async () => {
      const carol = await user('search-carol', [['FACT', 'pet', 'a cat called Miso']]);
      const memory = get().memory;
      const before = memory.statementCount;
      const refused: Array<[string, () => Promise<unknown>, MemoryErrorCode]> = [
        ['empty', () => carol.search(''), 'INVALID_QUERY'],
        ['only spaces and control characters', () => carol.search(' \n\t\u0000\u0007 '), 'INVALID_QUERY'],
        ['10,000 characters', () => carol.search('cat '.repeat(2500)), 'INVALID_QUERY'],
        ['a lone surrogate', () => carol.search('cat \ud800'), 'INVALID_QUERY'],
        ['not a string', () => carol.search(42 as unknown as string), 'INVALID_QUERY'],
        ['a negative limit', () => carol.search('cat', { limit: -1 }), 'INVALID_OPTION'],
        ['a limit over 100', () => carol.search('cat', { limit: 101 }), 'INVALID_OPTION'],
        ['a bad category', () => carol.search('cat', { category: 'fact' }), 'INVALID_CATEGORY'],
      ];
      for (const [name, run, code] of refused) expect(await codeOf(run), name).toBe(code);
      expect(memory.statementCount).toBe(before);

      const safe = [
        '& | ! <-> :*',
        'cat & !dog',
        'cat:* | (miso <-> cat)',
        "cat' or '1'='1",
        'cat\\',
        "'''",
        'cat\u0000miso',
        'cat\u001b[31m',
        'miso\r\ncat',
        '%_%',
        '*',
        ':',
        'a',
        'the of and',
        '🐈 cat',
        'x'.repeat(4096),
      ];
      for (const query of safe) {
        const code = await codeOf(() => carol.search(query));
        expect(code, JSON.stringify(query.slice(0, 40))).toBe('none');
      }
      expect((await carol.search('cat & !dog'))[0]?.key).toBe('pet');
      expect((await carol.search('miso\r\ncat'))[0]?.key).toBe('pet');
      expect((await carol.search("cat' or '1'='1")).every((m) => m.key === 'pet')).toBe(true);
    });
  });
}
