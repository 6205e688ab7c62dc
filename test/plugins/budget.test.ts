import fs from 'node:fs';
import { initializeLogger } from '@livekit/agents';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { identityToUserId, openMemory, type MemoryStore } from '../../memory/index.js';
import { createMemoryTools, startUserMemory } from '../../plugins/index.js';
import { tempDataDir } from '../support/backends.js';
import { PgWireProxy } from '../support/pg-wire-proxy.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { callTool } from '../support/call-tool.js';

/**
 * The session-start budget and the tool timeouts against a real PostgreSQL behind a wire proxy
 * that can slow the database down or stop it. Nothing here asserts a duration: only which answer
 * came back (a late session, a ready one, a "slow" sentence).
 */

const ALICE = 'alice-budget@example.com';
const BOB = 'bob-budget@example.com';

const call = callTool;

async function eventually<T>(
  probe: () => Promise<T>,
  ok: (value: T) => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(value)})`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe('memory within a latency budget (real PostgreSQL behind a slow or stopped proxy)', () => {
  let db: TestDatabase;
  let direct: MemoryStore;
  let proxy: PgWireProxy;
  let memory: MemoryStore;
  // Where the memory layer keeps its local write journal (never the checkout's .data/).
  const dataDir = tempDataDir('budget');

  beforeAll(async () => {
    initializeLogger({ pretty: false, level: 'warn' });
    db = await createTestDatabase('budget');
    direct = await openMemory({ env: {}, databaseUrl: db.url, journal: false }); // migrates, and bypasses the proxy
    const front = await PgWireProxy.inFrontOf(db.url);
    proxy = front.proxy;
    memory = await openMemory({ env: {}, databaseUrl: front.url, migrate: false, dataDir });

    await direct.provision(ALICE);
    await direct.forIdentity(ALICE).store('PREFERENCE', 'favorite_color', 'blue');
  }, 60_000);

  afterEach(() => {
    proxy.setDelay(0);
    proxy.startDatabase();
  });

  afterAll(async () => {
    await memory?.close();
    await proxy?.stop();
    await direct?.close();
    await db?.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('in time: a ready session, as without a budget', async () => {
    const session = await startUserMemory({ memory, participant: { identity: ALICE }, budgetMs: 10_000 });
    expect(session.available).toBe(true);
    expect(session.late).toBeUndefined();
    if (!session.available) throw session.error;
    expect(session.memoryBlock).toContain('"blue"');
  });

  it('a database slower than the budget: an unavailable session at once, and the memory arrives through `late`', async () => {
    proxy.setDelay(1500);
    const session = await startUserMemory({ memory, participant: { identity: ALICE }, budgetMs: 200 });

    expect(session.available).toBe(false);
    if (session.available || session.reason !== 'budget')
      throw new Error(`expected a late session, got ${JSON.stringify(session)}`);
    expect(session.error.code).toBe('TIMEOUT');
    expect(session.error.message).toMatch(/budget of 200 ms/);
    expect(session.identity).toBe(ALICE);
    expect(session.userId).toBe(identityToUserId(ALICE));
    expect(session.tools).toEqual({});
    expect(session.memoryBlock).toBe('');

    const late = await session.late;
    expect(late.available).toBe(true);
    if (!late.available) throw late.error;
    expect(late.identity).toBe(ALICE);
    expect(late.user.id).toBe(identityToUserId(ALICE));
    expect(late.memories.map((m) => [m.category, m.key, m.value])).toEqual([['PREFERENCE', 'favorite_color', 'blue']]);
    expect(late.memoryBlock).toContain('- PREFERENCE "favorite_color": "blue"');
    expect(Object.keys(late.tools).sort()).toEqual([
      'forget',
      'forget_me',
      'list_memories',
      'recall',
      'remember',
      'remember_me',
      'search_memories',
    ]);
    // The late tools are alice's: they read her memory (the database is quick again).
    proxy.setDelay(0);
    expect(await call(late.tools, 'recall', { category: 'PREFERENCE', key: 'favorite_color' })).toContain('"blue"');
  });

  it('a late session whose database then fails: `late` resolves failed (never rejects), for this user only', async () => {
    proxy.setDelay(1500);
    const session = await startUserMemory({ memory, participant: { identity: BOB }, budgetMs: 200 });
    if (session.available || session.reason !== 'budget') throw new Error('expected a late session');
    proxy.stopDatabase();
    const late = await session.late;
    expect(late.available).toBe(false);
    if (late.available) return;
    expect(late.reason).toBe('error');
    expect(late.identity).toBe(BOB);
    expect(late.tools).toEqual({});
  });

  it('a failed database is told apart from a slow one: reason "error", no `late`', async () => {
    proxy.stopDatabase();
    const session = await startUserMemory({ memory, participant: { identity: ALICE }, budgetMs: 10_000 });
    expect(session.available).toBe(false);
    if (session.available) return;
    expect(session.reason).toBe('error');
    expect(session.late).toBeUndefined();
    expect((session.error as { code?: string }).code).toBe('BACKEND_UNAVAILABLE');
  });

  it('a bad identity fails at once, however slow the database', async () => {
    proxy.setDelay(1500);
    const session = await startUserMemory({ memory, participant: { identity: 'x'.repeat(2000) }, budgetMs: 200 });
    expect(session.available).toBe(false);
    if (session.available) return;
    expect(session.reason).toBe('error');
    expect((session.error as { code?: string }).code).toBe('INVALID_IDENTITY');
  });

  it('with the database stopped, every tool answers a sentence instead of throwing', async () => {
    const tools = createMemoryTools(memory.forIdentity(ALICE), { timeoutMs: 2000 });
    proxy.stopDatabase();
    expect(await call(tools, 'recall', { category: 'PREFERENCE', key: 'favorite_color' })).toMatch(
      /^Could not look up PREFERENCE\/"favorite_color": memory is (unavailable|slow) right now/,
    );
    expect(await call(tools, 'list_memories', {})).toMatch(
      /^Could not list memories: memory is (unavailable|slow) right now/,
    );
    // A write may be journalled by the memory layer and reported saved; either way it is a sentence.
    expect(await call(tools, 'remember', { category: 'FACT', key: 'city', value: 'Lisbon' })).toMatch(
      /^(Saved|Could not)/,
    );
    expect(await call(tools, 'forget', { category: 'FACT', key: 'nothing_here' })).toMatch(
      /^(Forgot|Nothing was stored|Could not)/,
    );
  });

  it('with a database slower than the tool timeout, the model hears "memory is slow" and the write still lands', async () => {
    const outcomes: string[] = [];
    const tools = createMemoryTools(memory.forIdentity(ALICE), {
      timeoutMs: 500,
      onCall: (c) => outcomes.push(`${c.tool}:${c.outcome}`),
    });
    proxy.setDelay(2000);
    const recall = await call(tools, 'recall', { category: 'PREFERENCE', key: 'favorite_color' });
    expect(recall).toMatch(/^Could not look up PREFERENCE\/"favorite_color": memory is slow right now/);
    expect(recall).toMatch(/tell the user .* and carry on/i);
    expect(recall).not.toContain('blue');

    const remember = await call(tools, 'remember', { category: 'PREFERENCE', key: 'favorite_food', value: 'soup' });
    expect(remember).toMatch(/memory is slow right now/);
    expect(remember).toMatch(/not cancelled/);
    expect(outcomes).toEqual(['recall:slow', 'remember:slow']);
    // The write was not cancelled: it reaches the database once the slow round trip completes.
    proxy.setDelay(0);
    await eventually(
      () => direct.forIdentity(ALICE).retrieve('PREFERENCE', 'favorite_food'),
      (value) => value === 'soup',
      'the slow write to land',
    );
  });

  it('rejects a budget or timeout that is not a duration', async () => {
    await expect(startUserMemory({ memory, participant: { identity: ALICE }, budgetMs: -1 })).rejects.toThrow(
      /budgetMs/,
    );
    expect(() => createMemoryTools(memory.forIdentity(ALICE), { timeoutMs: 0 })).toThrow(/timeoutMs/);
  });
});
