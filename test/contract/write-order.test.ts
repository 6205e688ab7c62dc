import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKENDS, type BackendUnderTest } from '../support/backends.js';

/**
 * Online writes (p_clock null) are ordered by the server; journal replays (p_clock given) by
 * their clock. A worker host whose clock ran an hour ahead must not make later online writes of
 * other hosts disappear, and a replay must never undo a newer write.
 */
const CLOCK = /^\d{15}\.\d{10}\.[a-z0-9]+$/;

function clockAt(ms: number, seq = 0, writer = 'skewed'): string {
  return `${String(ms).padStart(15, '0')}.${String(seq).padStart(10, '0')}.${writer}`;
}

for (const backend of ['postgres', 'embedded'] as const) {
  describe(`write order (${backend})`, () => {
    let b: BackendUnderTest;
    let user: string;
    const future = () => clockAt(Date.now() + 3_600_000);
    const past = () => clockAt(Date.now() - 3_600_000);

    async function one<T>(sql: string, params: unknown[] = []): Promise<T> {
      const rows = await b.sql<{ r: T }>(`select ${sql} as r`, params);
      return rows[0]!.r;
    }
    const store = (key: string, value: string, clock: string | null) =>
      one<Record<string, unknown>>("public.memory_store($1, 'FACT', $2, $3, $4)", [user, key, value, clock]);
    const forget = (key: string, clock: string | null) =>
      one<Record<string, unknown>>("public.memory_forget($1, 'FACT', $2, $3)", [user, key, clock]);
    const retrieve = (key: string) => one<string | null>("public.memory_retrieve($1, 'FACT', $2)", [user, key]);

    beforeAll(async () => {
      b = await BACKENDS[backend]();
      user = (await b.memory.provision('writer@example.com')).id;
    });
    afterAll(async () => {
      await b?.close();
    });

    it('memory_clock_after: next sequence number, then next millisecond; writer "server"; null stays null', async () => {
      expect(await one('public.memory_clock_after($1)', ['000001700000000.0000000005.abcd'])).toBe(
        '000001700000000.0000000006.server',
      );
      expect(await one('public.memory_clock_after($1)', ['000001700000000.9999999999.abcd'])).toBe(
        '000001700000001.0000000000.server',
      );
      expect(await one('public.memory_clock_after($1)', ['000001700000000.0000000000.server'])).toBe(
        '000001700000000.0000000001.server',
      );
      expect(await one('public.memory_clock_after($1)', [null])).toBeNull();
      const c = '000001700000000.0000000007.zzzz';
      expect((await one<string>('public.memory_clock_after($1)', [c])) > c).toBe(true);
    });

    it('an online store overwrites a value written with a clock one hour in the future', async () => {
      const ahead = future();
      expect(await store('skewed', 'from the future', ahead)).toMatchObject({ applied: true, clock: ahead });
      const online = await store('skewed', 'now', null);
      expect(online).toEqual({ applied: true, clock: expect.stringMatching(CLOCK), updated_at: expect.anything() });
      expect((online.clock as string) > ahead).toBe(true);
      expect(await retrieve('skewed')).toBe('now');
      expect(await b.memory.forIdentity('writer@example.com').retrieve('FACT', 'skewed')).toBe('now');
      // Two online writes in a row: the second lands after the first, even within one millisecond.
      const again = await store('skewed', 'later', null);
      expect(again.applied).toBe(true);
      expect((again.clock as string) > (online.clock as string)).toBe(true);
      expect(await retrieve('skewed')).toBe('later');
    });

    it('a replay (p_clock given) still loses to a newer value, and says which clock won', async () => {
      const online = await store('replayed', 'online', null);
      const stale = past();
      expect(await store('replayed', 'stale replay', stale)).toEqual({
        applied: false,
        clock: stale,
        updated_at: null,
        current_clock: online.clock,
      });
      expect(await retrieve('replayed')).toBe('online');
    });

    it('an online store after a forget whose tombstone is one hour in the future is applied', async () => {
      await store('tombstoned', 'before', past());
      const ahead = future();
      expect(await forget('tombstoned', ahead)).toEqual({ existed: true, clock: ahead });
      // A replayed store older than the tombstone stays deleted...
      expect(await store('tombstoned', 'replayed', clockAt(Date.now()))).toMatchObject({
        applied: false,
        current_clock: ahead,
      });
      expect(await retrieve('tombstoned')).toBeNull();
      // ...an online one is the newest write there is.
      const online = await store('tombstoned', 'after', null);
      expect(online).toMatchObject({ applied: true });
      expect((online.clock as string) > ahead).toBe(true);
      expect(await retrieve('tombstoned')).toBe('after');
    });

    it('an online forget deletes a value written with a clock in the future, and its tombstone outranks it', async () => {
      const ahead = future();
      await store('doomed', 'from the future', ahead);
      const gone = await forget('doomed', null);
      expect(gone).toEqual({ existed: true, clock: expect.stringMatching(CLOCK) });
      expect((gone.clock as string) > ahead).toBe(true);
      expect(await retrieve('doomed')).toBeNull();
      expect(await store('doomed', 'replayed', ahead)).toMatchObject({ applied: false, current_clock: gone.clock });
      expect(await forget('never-stored', null)).toEqual({ existed: false, clock: expect.stringMatching(CLOCK) });
    });

    it('a replayed forget older than the value leaves it (existed: false)', async () => {
      const online = await store('kept', 'value', null);
      expect(await forget('kept', past())).toMatchObject({ existed: false });
      expect(await retrieve('kept')).toBe('value');
      expect(online.applied).toBe(true);
    });

    it('an online settings save wins over a configuration and secrets saved with future clocks; a replay does not', async () => {
      const ahead = future();
      const secret = (at: string) => ({ v: 1, kid: 'k1', iv: 'aa', ct: 'bb', tag: 'cc', at });
      const save = (config: unknown, secrets: unknown, clock: string | null) =>
        one<Record<string, unknown>>(
          "public.memory_save_settings($1, 'default', $2::jsonb, $3::jsonb, '[]'::jsonb, 'test', $4)",
          [user, config === null ? null : JSON.stringify(config), JSON.stringify(secrets), clock],
        );
      expect(await save({ voice: 'future' }, { API_KEY: secret(ahead) }, ahead)).toMatchObject({
        config: { voice: 'future' },
        clock: ahead,
      });
      const online = await save({ voice: 'now' }, { API_KEY: secret('000000000000000.0000000000.client') }, null);
      expect(online).toMatchObject({ config: { voice: 'now' }, clock: expect.stringMatching(CLOCK) });
      expect((online.clock as string) > ahead).toBe(true);
      // The server stamps the secret with the save's clock, whatever the caller sent.
      expect((online.secrets as Record<string, { at: string }>).API_KEY!.at).toBe(online.clock);
      const replay = await save({ voice: 'replayed' }, { API_KEY: secret(ahead) }, ahead);
      expect(replay).toMatchObject({ config: { voice: 'now' } });
      expect((replay.secrets as Record<string, { at: string }>).API_KEY!.at).toBe(online.clock);
    });

    it('session start returns each memory with its clock', async () => {
      const session = await one<{ memories: Array<Record<string, unknown>> }>(
        "public.memory_start_session($1, 'writer@example.com', 50, 'default')",
        [user],
      );
      expect(session.memories.length).toBeGreaterThan(0);
      for (const m of session.memories) expect(m.clock).toMatch(CLOCK);
      const stored = await b.sql<{ key: string; clock: string }>(
        'select key, clock from public.memories where user_id = $1',
        [user],
      );
      expect(Object.fromEntries(session.memories.map((m) => [m.key, m.clock]))).toEqual(
        Object.fromEntries(stored.map((r) => [r.key, r.clock])),
      );
    });
  });
}
