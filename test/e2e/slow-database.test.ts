import '../support/quiet-rtc.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { identityToUserId, openMemory, type MemoryStore } from '../../memory/index.js';
import { MEMORY_BLOCK_CLOSE, MEMORY_BLOCK_OPEN } from '../../plugins/index.js';
import { allText, rules, systemText, toolNames, userSaid, type RecordedRequest } from '../support/openai-standin.js';
import { PgWireProxy } from '../support/pg-wire-proxy.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { releaseLiveKitClients, startStack, type Stack } from '../support/stack.js';

const ALICE = 'alice@example.com';
const GENERIC_HELLO = 'Hello! How can I help?';

/** The scripted model answers from what it was shown: the block, if the request carries one. */
const script = rules(
  [
    {
      when: userSaid(/what is my favou?rite colou?r/i),
      reply: (req) => ({
        text: systemText(req).includes('"favorite_color": "blue"')
          ? 'Your favourite colour is blue.'
          : "I can't check right now.",
      }),
    },
    {
      when: (req) => systemText(req).includes('Do not say whether you have talked before'),
      reply: { text: GENERIC_HELLO },
    },
    { when: (req) => systemText(req).includes('returning'), reply: { text: 'Welcome back!' } },
    { when: (req) => systemText(req).includes('first conversation'), reply: { text: 'Hello, nice to meet you!' } },
  ],
  { text: 'OK.' },
);

interface Health {
  status: 'ok' | 'degraded';
  livekit: { registered: boolean };
  memory: { state: 'up' | 'down'; backend: { kind: string }; latencyMs: number; error?: string };
}

async function health(stack: Stack): Promise<{ code: number; body: Health }> {
  const response = await fetch(stack.healthUrl!);
  return { code: response.status, body: (await response.json()) as Health };
}

async function until<T>(
  probe: () => Promise<T> | T,
  ok: (value: T) => boolean,
  what: string,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

describe('Database slower than the budget: the session starts on time without memory, and the block arrives later', () => {
  let db: TestDatabase;
  let proxy: PgWireProxy;
  let stack: Stack;

  beforeAll(async () => {
    db = await createTestDatabase('slowdb');
    // Migrate and seed alice's memory directly, before she joins.
    const direct: MemoryStore = await openMemory({ env: {}, databaseUrl: db.url, journal: false });
    try {
      await direct.provision(ALICE);
      await direct.forIdentity(ALICE).store('PREFERENCE', 'favorite_color', 'blue');
    } finally {
      await direct.close();
    }
    const front = await PgWireProxy.inFrontOf(db.url);
    proxy = front.proxy;
    // No delay while the worker's main process opens (and migrates) the database.
    stack = await startStack({ env: { DATABASE_URL: front.url, MEMORY_BUDGET_MS: '300' } });
    stack.model.setResponder(script);
  }, 300_000);

  afterAll(async () => {
    await stack?.stop();
    await releaseLiveKitClients();
    await proxy?.stop();
    await db?.drop();
  });

  it('greets alice without memory, then her memory block reaches a later model request', async () => {
    const aliceRequests = (): RecordedRequest[] =>
      stack.model.chatRequests().filter((r) => (r.body as { user?: string }).user === identityToUserId(ALICE));

    proxy.setDelay(1500); // every chunk, both ways: a fresh connection and one query take about 6 s
    const joinedAt = performance.now();
    const alice = await stack.join(ALICE);
    const greeting = await alice.waitForGreeting();
    const greetingMs = Math.round(performance.now() - joinedAt);
    expect(greeting).toBe(GENERIC_HELLO); // not "memory is unavailable": it may still arrive

    // The first request (the greeting) was made without memory: no block, no tools, no value.
    const [first] = aliceRequests();
    expect(first).toBeDefined();
    expect(systemText(first!)).not.toContain(MEMORY_BLOCK_OPEN);
    expect(systemText(first!)).toContain('still loading');
    expect(toolNames(first!)).toEqual([]);
    expect(allText(first!)).not.toMatch(/blue/);

    // The worker logs why, with ids only.
    const lateLine = await until(
      () => stack.workerLog.find((line) => line.includes('memory is late')),
      Boolean,
      'the worker to log that memory is late',
    );
    expect(lateLine).toContain(identityToUserId(ALICE));
    expect(lateLine).not.toContain(ALICE);
    expect(lateLine).not.toMatch(/blue/);

    // The late memory lands in the running session.
    const landedLine = await until(
      () => stack.workerLog.find((line) => line.includes('late memory arrived')),
      Boolean,
      'the late memory to land',
    );
    const landedMs = Math.round(performance.now() - joinedAt);
    expect(landedLine).not.toMatch(/blue/);

    const count = aliceRequests().length;
    expect(await alice.say('What is my favourite colour?')).toBe('Your favourite colour is blue.');
    await alice.leave();

    const later = aliceRequests().slice(count);
    expect(later.length).toBeGreaterThan(0);
    const system = systemText(later[0]!);
    const block = system.slice(
      system.indexOf(MEMORY_BLOCK_OPEN),
      system.indexOf(MEMORY_BLOCK_CLOSE) + MEMORY_BLOCK_CLOSE.length,
    );
    expect(block).toContain('- PREFERENCE "favorite_color": "blue"');
    expect(system).toContain('has just loaded');
    expect(system).not.toContain('still loading');
    expect(toolNames(later[0]!).sort()).toEqual([
      'forget',
      'forget_me',
      'list_memories',
      'recall',
      'remember',
      'remember_me',
      'search_memories',
    ]);
    // Greeted once: no second greeting after the memory arrived.
    expect(alice.agentReplies.filter((text) => text === GENERIC_HELLO || text === 'Welcome back!')).toEqual([
      GENERIC_HELLO,
    ]);

    console.info(
      `slow database (1.5 s per chunk, budget 300 ms): greeting after ${greetingMs} ms, late memory landed after ${landedMs} ms`,
    );
  });

  it('the health endpoint reports memory up, down while the database is stopped, and up again', async () => {
    proxy.setDelay(0);
    expect(stack.healthUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/health$/);

    const up = await until(
      () => health(stack),
      (h) => h.body.memory.state === 'up',
      'memory to be up',
    );
    expect(up.code).toBe(200);
    expect(up.body.status).toBe('ok');
    expect(up.body.livekit.registered).toBe(true);
    expect(up.body.memory.backend.kind).toBe('postgres');

    proxy.stopDatabase();
    const down = await health(stack);
    expect(down.code).toBe(200);
    expect(down.body.status).toBe('degraded');
    expect(down.body.memory.state).toBe('down');
    expect(down.body.memory.error).toMatch(/^[A-Z_]+: /);
    expect(down.body.livekit.registered).toBe(true);

    proxy.startDatabase();
    const back = await until(
      () => health(stack),
      (h) => h.body.memory.state === 'up',
      'memory to come back',
    );
    expect(back.body.status).toBe('ok');
  });
});
