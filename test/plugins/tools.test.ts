import fs from 'node:fs';
import { initializeLogger, llm } from '@livekit/agents';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMemory, type MemoryStore } from '../../memory/index.js';
import { createMemoryTools, MEMORY_TOOL_NAMES, startUserMemory } from '../../plugins/index.js';
import { tempDataDir } from '../support/backends.js';
import { callTool } from '../support/call-tool.js';

const call = callTool;

describe('memory tools', () => {
  let dataDir: string;
  let memory: MemoryStore;
  beforeAll(async () => {
    initializeLogger({ pretty: false, level: 'warn' });
    dataDir = tempDataDir('tools');
    memory = await openMemory({ env: {}, dataDir, serve: false });
  });
  afterAll(async () => {
    await memory?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('offers remember, recall, forget, list_memories and search_memories with the categories as an enumeration', () => {
    const alice = memory.forIdentity('schema@example.com');
    const ctx = new llm.ToolContext(createMemoryTools(alice, { categories: ['FACT', 'HOBBY'] }));
    expect(Object.keys(ctx.functionTools).sort()).toEqual([...MEMORY_TOOL_NAMES].sort());
    const schema = llm.toJsonSchema(ctx.getFunctionTool('remember')!.parameters) as {
      properties: Record<string, { enum?: string[] }>;
      required: string[];
    };
    expect(schema.properties.category!.enum).toEqual(['FACT', 'HOBBY']);
    expect(schema.required.sort()).toEqual(['category', 'key', 'value']);
    expect(Object.keys(schema.properties)).not.toContain('user_id');
  });

  it('work for their own user only, and always answer with a sentence', async () => {
    const alice = await startUserMemory({ memory, participant: { identity: 'alice-tools@example.com' } });
    const bob = await startUserMemory({ memory, participant: { identity: 'bob-tools@example.com' } });
    if (!alice.available || !bob.available) throw new Error('memory should be available');

    expect(
      await call(alice.tools, 'remember', { category: 'PREFERENCE', key: 'favorite_color', value: 'blue' }),
    ).toContain('Saved');
    expect(await call(alice.tools, 'recall', { category: 'PREFERENCE', key: 'favorite_color' })).toContain('"blue"');
    const bobRecall = await call(bob.tools, 'recall', { category: 'PREFERENCE', key: 'favorite_color' });
    expect(bobRecall).toMatch(/Nothing is stored/);
    expect(bobRecall).not.toContain('blue');
    expect(await call(bob.tools, 'list_memories', {})).toMatch(/Nothing is stored/);
    expect(await call(alice.tools, 'list_memories', { category: 'PREFERENCE' })).toContain('favorite_color');
    expect(await call(alice.tools, 'search_memories', { query: 'favourite colour' })).toBe(
      '1. PREFERENCE/"favorite_color" = "blue"',
    );
    expect(await call(bob.tools, 'search_memories', { query: 'favorite color blue' })).toMatch(/^Nothing stored/);
    expect(await call(alice.tools, 'forget', { category: 'PREFERENCE', key: 'favorite_color' })).toContain('Forgot');
    expect(await call(alice.tools, 'forget', { category: 'PREFERENCE', key: 'favorite_color' })).toMatch(
      /Nothing was stored/,
    );
  });

  it('report each call to onCall with the tool, its time and outcome, and never a key or value', async () => {
    const calls: unknown[] = [];
    const tools = createMemoryTools(memory.forIdentity('dana-tools@example.com'), { onCall: (c) => calls.push(c) });
    await call(tools, 'remember', { category: 'FACT', key: 'secret_city', value: 'Oslo' });
    await call(tools, 'recall', { category: 'FACT', key: 'secret_city' });
    await call(tools, 'list_memories', {});
    await call(tools, 'forget', { category: 'FACT', key: 'secret_city' });
    expect(calls.map((c) => (c as { tool: string }).tool)).toEqual(['remember', 'recall', 'list_memories', 'forget']);
    for (const c of calls) {
      expect(c).toEqual({ tool: expect.any(String), ms: expect.any(Number), outcome: 'answered' });
      expect((c as { ms: number }).ms).toBeGreaterThan(0);
      expect(JSON.stringify(c)).not.toMatch(/Oslo|secret_city/);
    }
  });

  it('report what remember kept out to onSensitive by kind only, never a key or value, and write nothing', async () => {
    const events: unknown[] = [];
    const calls: unknown[] = [];
    const handle = memory.forIdentity('erin-tools@example.com');
    const tools = createMemoryTools(handle, { onSensitive: (e) => events.push(e), onCall: (c) => calls.push(c) });
    const answer = await call(tools, 'remember', { category: 'FACT', key: 'bank_pin', value: '4921' });
    expect(answer).toMatch(/^Not saved: FACT\/"bank_pin" looks like it contains a password or other credential/);
    expect(answer).not.toContain('4921');
    expect(events).toEqual([
      { source: 'remember', action: 'refused', category: 'FACT', kinds: ['credential'], details: ['credential-key'] },
    ]);
    expect(JSON.stringify([events, calls])).not.toMatch(/4921|bank_pin/);
    expect(await handle.retrieve('FACT', 'bank_pin')).toBeNull();
  });

  it('turn bad input and a closed backend into a message for the model, not an exception', async () => {
    const carol = await startUserMemory({ memory, participant: { identity: 'carol-tools@example.com' } });
    if (!carol.available) throw new Error('memory should be available');
    expect(await call(carol.tools, 'remember', { category: 'FACT', key: 'bad\nkey', value: 'x' })).toMatch(
      /Could not save .*Fix the arguments/,
    );
    expect(await call(carol.tools, 'remember', { category: 'FACT', key: 'big', value: 'x'.repeat(20_000) })).toMatch(
      /Could not save/,
    );

    expect(await call(carol.tools, 'search_memories', { query: '' })).toMatch(/Could not search .*Fix the arguments/);
    expect(await call(carol.tools, 'search_memories', { query: 'x'.repeat(10_000) })).toMatch(/Could not search/);
    await carol.handle.store('FACT', 'quote', 'she said </user_memory> & left');
    expect(await call(carol.tools, 'search_memories', { query: 'said & | ! <-> :*' })).toBe(
      '1. FACT/"quote" = "she said \\u003c/user_memory\\u003e \\u0026 left"',
    );

    const other = await openMemory({ env: {}, dataDir: tempDataDir('closed'), serve: false });
    const dana = await startUserMemory({ memory: other, participant: { identity: 'dana@example.com' } });
    await other.close();
    if (!dana.available) throw new Error('memory should be available');
    expect(await call(dana.tools, 'remember', { category: 'FACT', key: 'k', value: 'v' })).toMatch(
      /memory is unavailable right now \(CLOSED\)/,
    );
    expect(await call(dana.tools, 'recall', { category: 'FACT', key: 'k' })).toMatch(/unavailable/);
    expect(await call(dana.tools, 'search_memories', { query: 'k' })).toMatch(/unavailable/);
  });

  it('reports memory as unavailable, with no tools, when provisioning fails', async () => {
    const broken = await openMemory({ env: {}, databaseUrl: 'postgres://postgres@127.0.0.1:1/none', migrate: false });
    const session = await startUserMemory({ memory: broken, participant: { identity: 'erin@example.com' } });
    await broken.close();
    expect(session.available).toBe(false);
    expect(session.tools).toEqual({});
    expect(session.memoryBlock).toBe('');
    if (!session.available) expect(session.error.message).toMatch(/ECONNREFUSED/);
  });
});
