import fs from 'node:fs';
import { initializeLogger, llm } from '@livekit/agents';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore, openMemory } from '../../memory/index.js';
import { rpcTransportOf, transportOf } from '../../memory/store.js';
import {
  CONSENT_DENIED_ANSWER,
  CONSENT_REQUIRED_ANSWER,
  MEMORY_ASK_NOTICE,
  MEMORY_OFF_NOTICE,
  createMemoryTools,
  memoryInstructions,
  startUserMemory,
  type UserMemoryReady,
} from '../../plugins/index.js';
import { tempDataDir } from '../support/backends.js';
import { callTool as call } from '../support/call-tool.js';

/** Consent, expiry and the cap as the model meets them: the tools' answers and the agent's instructions. */
describe('memory tools and instructions: the lifecycle', () => {
  let dataDir: string;
  let memory: MemoryStore;
  beforeAll(async () => {
    initializeLogger({ pretty: false, level: 'warn' });
    dataDir = tempDataDir('lifetools');
    memory = await openMemory({ env: {}, dataDir, serve: false });
  });
  afterAll(async () => {
    await memory?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  /** The same database under another deployment's lifecycle settings. */
  const deployment = (lifecycle: ConstructorParameters<typeof MemoryStore>[1]['lifecycle']) =>
    new MemoryStore(rpcTransportOf(memory), { namespace: memory.namespace, maxValueBytes: 16 * 1024, lifecycle });

  async function ready(store: MemoryStore, identity: string): Promise<UserMemoryReady> {
    const session = await startUserMemory({ memory: store, participant: { identity } });
    if (!session.available) throw new Error('memory should be available');
    return session;
  }

  const rows = async (userId: string) =>
    (
      await transportOf(memory).query<{ key: string }>(
        'select key from public.memories where user_id = $1 order by key',
        [userId],
      )
    ).map((r) => r.key);

  it('forget_me erases and turns memory off; remember then stores nothing and says why; remember_me turns it back on', async () => {
    const alice = await ready(memory, 'alice-consent@example.com');
    const bob = await ready(memory, 'bob-consent@example.com');
    expect(alice.consent).toBe('granted');
    expect(memoryInstructions(alice)).not.toContain(MEMORY_OFF_NOTICE);
    await call(alice.tools, 'remember', { category: 'FACT', key: 'city', value: 'Oslo' });
    await call(alice.tools, 'remember', { category: 'FACT', key: 'pet', value: 'a cat' });
    await call(bob.tools, 'remember', { category: 'FACT', key: 'city', value: 'Rome' });

    expect(await call(alice.tools, 'forget_me', {})).toMatch(
      /^Done: memory is off for this user at their request\. 2 memories were erased/,
    );
    expect(await rows(alice.user.id)).toEqual([]);
    expect(await call(alice.tools, 'remember', { category: 'FACT', key: 'city', value: 'Oslo' })).toBe(
      CONSENT_DENIED_ANSWER,
    );
    expect(await rows(alice.user.id)).toEqual([]);
    expect(await rows(bob.user.id)).toEqual(['city']);

    // A later session: the instructions say memory is off at the caller's request, and a
    // session's tools refuse even before asking the database.
    const later = await ready(memory, 'alice-consent@example.com');
    expect(later.consent).toBe('denied');
    expect(memoryInstructions(later)).toContain(MEMORY_OFF_NOTICE);
    expect(await call(later.tools, 'remember', { category: 'FACT', key: 'x', value: 'y' })).toBe(CONSENT_DENIED_ANSWER);
    // Tools made without the session's state still get the database's refusal, as a sentence.
    expect(await call(createMemoryTools(later.handle), 'remember', { category: 'FACT', key: 'x', value: 'y' })).toBe(
      CONSENT_DENIED_ANSWER,
    );
    expect(await rows(alice.user.id)).toEqual([]);

    expect(await call(later.tools, 'remember_me', {})).toMatch(/^Done: memory is on for this user/);
    expect(await call(later.tools, 'remember', { category: 'FACT', key: 'city', value: 'Oslo' })).toMatch(/^Saved/);
    expect(await rows(alice.user.id)).toEqual(['city']);
    expect(memoryInstructions(await ready(memory, 'alice-consent@example.com'))).not.toContain(MEMORY_OFF_NOTICE);
  });

  it('MEMORY_CONSENT_DEFAULT=ask: the instructions say how to ask, and nothing is stored until remember_me', async () => {
    const asking = deployment({ consentDefault: 'ask' });
    const carol = await ready(asking, 'carol-ask@example.com');
    expect(carol.consent).toBe('ask');
    const instructions = memoryInstructions(carol);
    expect(instructions).toContain(MEMORY_ASK_NOTICE);
    expect(instructions).toMatch(/ask them .* whether you may remember/);
    expect(instructions).toContain('`remember_me`');
    expect(await call(carol.tools, 'remember', { category: 'FACT', key: 'city', value: 'Lima' })).toBe(
      CONSENT_REQUIRED_ANSWER,
    );
    expect(
      await call(createMemoryTools(carol.handle), 'remember', { category: 'FACT', key: 'city', value: 'Lima' }),
    ).toBe(CONSENT_REQUIRED_ANSWER);
    expect(await rows(carol.user.id)).toEqual([]);
    await call(carol.tools, 'remember_me', {});
    expect(await call(carol.tools, 'remember', { category: 'FACT', key: 'city', value: 'Lima' })).toMatch(/^Saved/);
    expect(await rows(carol.user.id)).toEqual(['city']);
    const next = await ready(asking, 'carol-ask@example.com');
    expect(next.consent).toBe('granted');
    expect(memoryInstructions(next)).not.toContain(MEMORY_ASK_NOTICE);

    // Declining: forget_me records it, and the next session does not ask again.
    const dave = await ready(asking, 'dave-ask@example.com');
    await call(dave.tools, 'forget_me', {});
    expect((await ready(asking, 'dave-ask@example.com')).consent).toBe('denied');
  });

  it('remember takes expires_in_days and says when it expires; the cap names what it evicted', async () => {
    const schema = llm.toJsonSchema(
      new llm.ToolContext(createMemoryTools(memory.forIdentity('schema-life@example.com'))).getFunctionTool('remember')!
        .parameters,
    ) as { properties: Record<string, unknown>; required: string[] };
    expect(Object.keys(schema.properties)).toContain('expires_in_days');
    expect(schema.required).not.toContain('expires_in_days');

    const erin = await ready(memory, 'erin-expiry@example.com');
    const answer = await call(erin.tools, 'remember', {
      category: 'TASK',
      key: 'flight',
      value: 'flight on Friday',
      expires_in_days: 3,
    });
    const day = new Date(Date.now() + 3 * 24 * 60 * 60 * 1000).toISOString().slice(0, 10);
    expect(answer).toBe(`Saved TASK/"flight" = "flight on Friday". It expires on ${day} and is forgotten then.`);
    const [stored] = await erin.handle.list({ category: 'TASK' });
    expect(stored!.expiresAt!.getTime()).toBeGreaterThan(Date.now() + 3 * 24 * 60 * 60 * 1000 - 60_000);
    expect(
      await call(erin.tools, 'remember', { category: 'TASK', key: 'x', value: 'y', expires_in_days: 0 }).catch(
        (e: unknown) => String(e),
      ),
    ).toMatch(/expires_in_days|too_small|>=1/);

    const capped = deployment({ maxPerUser: 2 });
    const fay = await ready(capped, 'fay-cap@example.com');
    await call(fay.tools, 'remember', { category: 'FACT', key: 'one', value: '1' });
    await call(fay.tools, 'remember', { category: 'FACT', key: 'two', value: '2' });
    expect(await call(fay.tools, 'recall', { category: 'FACT', key: 'one' })).toContain('"1"');
    const evicting = await call(fay.tools, 'remember', { category: 'FACT', key: 'three', value: '3' });
    expect(evicting).toBe(
      'Saved FACT/"three" = "3". To make room (the memory limit per user was reached), the least recently used memory was forgotten: FACT/"two". Tell the user.',
    );
    expect(await rows(fay.user.id)).toEqual(['one', 'three']);
  });
});
