import { llm, voice } from '@livekit/agents';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { MemoryError, identityToUserId, openMemory, type MemoryStore } from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import {
  MEMORY_BLOCK_OPEN,
  MEMORY_TOOL_NAMES,
  userMemory,
  type AgentMemory,
  type JobContextLike,
} from '../../plugins/index.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

/**
 * userMemory() with LiveKit Agents' real Agent and ToolContext classes, on a real PostgreSQL: the
 * agent a tool hands off to gets the same user's block and tools from the loaded memory, without
 * another database round trip, and never another user's.
 */

const ALICE = 'alice-handoff@example.com';
const BOB = 'bob-handoff@example.com';

/** The parts of agents-js's JobContext that userMemory uses; the participant is a plain identity. */
function jobFor(identity: string, metadata = ''): JobContextLike & { shutdown: () => Promise<void> } {
  const callbacks: (() => Promise<void>)[] = [];
  return {
    proc: {},
    job: { id: `job-${identity}`, metadata },
    waitForParticipant: () => Promise.resolve({ identity }),
    addShutdownCallback: (callback) => callbacks.push(callback),
    shutdown: async () => {
      for (const callback of callbacks) await callback();
    },
  };
}

async function runTool(agent: voice.Agent, name: string, args: Record<string, unknown>): Promise<unknown> {
  const tool = agent.toolCtx.getFunctionTool(name);
  if (!tool) throw new Error(`the agent has no tool ${name}`);
  const parsed = (tool.parameters as { parse: (v: unknown) => unknown }).parse(args);
  return tool.execute(parsed, { ctx: {} as never, toolCallId: 'call_1', abortSignal: new AbortController().signal });
}

/** The first agent, with a tool that hands the session to a second agent built from the same memory. */
function firstAgent(memory: AgentMemory): voice.Agent {
  const transfer = llm.tool({
    description: 'Hand the conversation to the billing agent.',
    parameters: z.object({}),
    execute: () => Promise.resolve(new voice.Agent(memory.agentOptions('You are the billing agent.'))),
  });
  return new voice.Agent(memory.agentOptions('You are the front desk.', { tools: { transfer } }));
}

describe('userMemory and handoffs (real agents-js classes, real PostgreSQL)', () => {
  let db: TestDatabase;
  let store: MemoryStore;

  beforeAll(async () => {
    db = await createTestDatabase('handoff');
    store = await openMemory({ env: {}, databaseUrl: db.url, journal: false });
    await store.provision(ALICE);
    await store.provision(BOB);
    await store.forIdentity(ALICE).store('PREFERENCE', 'favorite_color', 'blue');
    await store.forIdentity(BOB).store('PREFERENCE', 'favorite_color', 'green');
  }, 60_000);

  afterAll(async () => {
    await store?.close();
    await db?.drop();
  });

  it('the handed-off agent has the same user block and tools, with no database round trip', async () => {
    const job = jobFor(ALICE);
    const memory = await userMemory(job, { store, budgetMs: Infinity });
    expect(memory.available).toBe(true);
    expect(memory.userId).toBe(identityToUserId(ALICE));

    const front = firstAgent(memory);
    expect(Object.keys(front.toolCtx.functionTools).sort()).toEqual([...MEMORY_TOOL_NAMES, 'transfer'].sort());

    const before = transportOf(store).statementCount;
    const billing = await runTool(front, 'transfer', {});
    expect(billing).toBeInstanceOf(voice.Agent);
    expect(transportOf(store).statementCount).toBe(before);

    const next = billing as voice.Agent;
    const instructions = next.instructions as string;
    expect(instructions.startsWith('You are the billing agent.')).toBe(true);
    expect(instructions).toContain(MEMORY_BLOCK_OPEN);
    expect(instructions).toContain('"favorite_color": "blue"');
    expect(instructions).not.toContain('green');
    expect(Object.keys(next.toolCtx.functionTools).sort()).toEqual([...MEMORY_TOOL_NAMES].sort());

    // The second agent's tools write as alice, and only as alice.
    expect(await runTool(next, 'remember', { category: 'FACT', key: 'plan', value: 'gold' })).toContain('Saved');
    expect(await store.forIdentity(ALICE).retrieve('FACT', 'plan')).toBe('gold');
    expect(await store.forIdentity(BOB).retrieve('FACT', 'plan')).toBeNull();
    await job.shutdown();
  });

  it("two users' jobs side by side: each handoff carries its own user's memory only", async () => {
    const [alice, bob] = await Promise.all([
      userMemory(jobFor(ALICE), { store, budgetMs: Infinity }),
      userMemory(jobFor(BOB), { store, budgetMs: Infinity }),
    ]);
    const [aliceNext, bobNext] = (await Promise.all([
      runTool(firstAgent(alice), 'transfer', {}),
      runTool(firstAgent(bob), 'transfer', {}),
    ])) as voice.Agent[];
    expect(aliceNext!.instructions).toContain('"blue"');
    expect(aliceNext!.instructions).not.toContain('"green"');
    expect(bobNext!.instructions).toContain('"green"');
    expect(bobNext!.instructions).not.toContain('"blue"');
    expect(await runTool(bobNext!, 'recall', { category: 'PREFERENCE', key: 'favorite_color' })).toContain('"green"');
    expect(await runTool(aliceNext!, 'recall', { category: 'PREFERENCE', key: 'favorite_color' })).toContain('"blue"');
  });

  it('a store that cannot be opened gives agents without memory tools, told that memory is unavailable', async () => {
    const failing = Promise.reject(new MemoryError('BACKEND_UNAVAILABLE', 'the database is down'));
    const memory = await userMemory(jobFor(ALICE), { store: failing });
    expect(memory.available).toBe(false);
    expect(memory.userId).toBeUndefined();
    const agent = new voice.Agent(memory.agentOptions('You are the front desk.'));
    expect(Object.keys(agent.toolCtx.functionTools)).toEqual([]);
    expect(agent.instructions).toContain('Long-term memory is unavailable');
  });

  it("a tool of the caller's that takes a memory tool's name is refused, not silently replaced", async () => {
    const memory = await userMemory(jobFor(ALICE), { store, budgetMs: Infinity });
    const remember = llm.tool({ description: 'mine', parameters: z.object({}), execute: () => Promise.resolve('x') });
    expect(() => memory.agentOptions('x', { tools: { remember } })).toThrow(/"remember" is taken by the memory tools/);
  });

  it("the settings tenant comes from the job's dispatch metadata", async () => {
    await store.forIdentity(ALICE).saveSettings({ tenant: 'acme', config: { instructions: 'You work for Acme.' } });
    const memory = await userMemory(jobFor(ALICE, '{"tenant":"acme"}'), { store, budgetMs: Infinity });
    expect(memory.settings?.tenant).toBe('acme');
    expect(memory.agentOptions('Base.').instructions).toContain('You work for Acme.');
  });

  it('per-turn recall: the request that answers a user turn gets their memory that is not in the block; the agent history does not', async () => {
    // Eight newer memories push the dentist out of a five-entry block.
    await store.forIdentity(ALICE).store('PERSONAL', 'dentist_name', 'Dr. Okafor');
    for (let i = 0; i < 8; i += 1) await store.forIdentity(ALICE).store('FACT', `note_${i}`, `filler ${i}`);
    await store.forIdentity(BOB).store('PERSONAL', 'dentist_name', 'Dr. Lindqvist');
    const memory = await userMemory(jobFor(ALICE), {
      store,
      budgetMs: Infinity,
      memoryLimit: 5,
      recall: { budgetMs: 5000 },
    });
    const agent = new voice.Agent(memory.agentOptions('Base.'));
    expect(agent.instructions).not.toContain('dentist');

    const ctx = agent.chatCtx.copy();
    ctx.addMessage({ role: 'user', content: 'who is my dentist?' });
    const withRecall = await memory.recallInto(ctx);
    const items = withRecall.items.filter((i): i is llm.ChatMessage => i.type === 'message');
    expect(items.at(-1)!.textContent).toBe('who is my dentist?');
    expect(items.at(-2)!.role).toBe('system');
    expect(items.at(-2)!.textContent).toContain('"dentist_name": "Dr. Okafor"');
    expect(items.at(-2)!.textContent).not.toContain('Lindqvist');
    // The context handed in is not changed; the same turn recalls once (no second search).
    expect(ctx.items).toHaveLength(withRecall.items.length - 1);
    const search = vi.spyOn(memory.handle!, 'search');
    await memory.recallInto(ctx);
    expect(search).not.toHaveBeenCalled();

    // A request after the assistant answered (no pending user turn) gets nothing added.
    const answered = ctx.copy();
    answered.addMessage({ role: 'assistant', content: 'Dr. Okafor.' });
    expect(await memory.recallInto(answered)).toBe(answered);

    // addRecall wraps the agent's own llmNode once, whatever the number of calls.
    const seen: llm.ChatContext[] = [];
    agent.llmNode = (chatCtx) => {
      seen.push(chatCtx);
      return Promise.resolve(null);
    };
    memory.addRecall(agent);
    memory.addRecall(agent);
    await agent.llmNode(ctx, agent.toolCtx, {});
    expect(seen).toHaveLength(1);
    expect(JSON.stringify(seen[0]!.items.map((i) => (i.type === 'message' ? i.textContent : '')))).toContain(
      'Dr. Okafor',
    );
  });

  it('a user whose every memory is in the block: recall has nothing to add and does not search', async () => {
    const memory = await userMemory(jobFor(BOB), { store, budgetMs: Infinity, memoryLimit: 20 });
    expect(memory.state.available && memory.state.allLoaded).toBe(true);
    const search = vi.spyOn(memory.handle!, 'search');
    const ctx = new voice.Agent(memory.agentOptions('Base.')).chatCtx.copy();
    ctx.addMessage({ role: 'user', content: 'who is my dentist?' });
    expect(await memory.recallInto(ctx)).toBe(ctx);
    expect(search).not.toHaveBeenCalled();
  });

  it('recall: false leaves every request as it is', async () => {
    const memory = await userMemory(jobFor(ALICE), { store, budgetMs: Infinity, memoryLimit: 5, recall: false });
    const ctx = new voice.Agent(memory.agentOptions('Base.')).chatCtx.copy();
    ctx.addMessage({ role: 'user', content: 'who is my dentist?' });
    expect(await memory.recallInto(ctx)).toBe(ctx);
  });
});
