import fs from 'node:fs';
import { initializeLogger } from '@livekit/agents';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDACTION_MARKERS, identityToUserId, openMemory, type MemoryStore } from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import {
  createMemoryTools,
  userMemory,
  type JobContextLike,
  type MemoryLogger,
  type MemoryTools,
  type SensitiveValueEvent,
} from '../../plugins/index.js';
import { tempDataDir } from '../support/backends.js';
import { callTool } from '../support/call-tool.js';
import { HARMLESS, SENSITIVE } from '../support/pii-values.js';

/**
 * The remember tool's PII policy through LiveKit Agents' own ToolContext, against a real embedded
 * database: a refused value is never written and never echoed, a redacted one is written without
 * its sensitive part, and the logs carry kinds, never values.
 */

/** A logger that keeps every line, to check what would have been logged. */
function capturingLogger(): MemoryLogger & { lines: string[] } {
  const lines: string[] = [];
  const keep = (level: string) => (fields: Record<string, unknown>, message: string) =>
    lines.push(JSON.stringify({ level, ...fields, message }));
  return { lines, info: keep('info'), warn: keep('warn'), error: keep('error') };
}

function jobFor(identity: string): JobContextLike {
  return {
    proc: {},
    job: { id: `job-${identity}` },
    waitForParticipant: () => Promise.resolve({ identity }),
    addShutdownCallback: () => {},
  };
}

describe('the remember tool keeps sensitive values out (real tools, real embedded database)', () => {
  let dataDir: string;
  let memory: MemoryStore;
  const rowsOf = async (identity: string) =>
    transportOf(memory).query<{ key: string; value: string }>(
      'select key, value from public.memories where user_id = $1 order by key',
      [identityToUserId(identity)],
    );

  beforeAll(async () => {
    initializeLogger({ pretty: false, level: 'warn' });
    dataDir = tempDataDir('pii-tools');
    memory = await openMemory({ env: {}, dataDir, serve: false });
  });
  afterAll(async () => {
    await memory?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  const toolsFor = async (identity: string, policy?: 'refuse' | 'redact' | 'allow') => {
    await memory.provision(identity);
    return createMemoryTools(memory.forIdentity(identity), policy ? { pii: { policy } } : {});
  };
  const remember = (tools: MemoryTools, key: string, value: string) =>
    callTool(tools, 'remember', { category: 'PERSONAL', key, value });

  it(`refuse (the default): none of the ${SENSITIVE.length} sensitive values is written, and no answer echoes one`, async () => {
    const tools = await toolsFor('refuse-pii@example.com');
    for (const [i, { value, secret, kind, key }] of SENSITIVE.entries()) {
      const answer = await remember(tools, key ?? `note_${i}`, value);
      expect(answer, value).toMatch(/^Not saved: .* looks like it contains /);
      expect(answer).toContain(
        { card: 'payment card number', 'national-id': 'national identification number', credential: 'credential' }[
          kind
        ],
      );
      expect(answer).toMatch(/never kept in long-term memory/);
      expect(answer).not.toContain(secret);
      expect(answer).not.toContain(value);
    }
    expect(await rowsOf('refuse-pii@example.com')).toEqual([]);
    const anywhere = await transportOf(memory).query<{ value: string }>('select value from public.memories');
    for (const { secret } of SENSITIVE) for (const row of anywhere) expect(row.value).not.toContain(secret);
  });

  it(`the ${HARMLESS.length} harmless look-alikes are saved as given`, async () => {
    const tools = await toolsFor('harmless-pii@example.com');
    for (const [i, { value, key }] of HARMLESS.entries()) {
      expect(await remember(tools, key ?? `note_${i}`, value), value).toMatch(/^Saved PERSONAL/);
    }
    const rows = await rowsOf('harmless-pii@example.com');
    expect(rows.map((r) => r.value).sort()).toEqual(HARMLESS.map((h) => h.value).sort());
  });

  it('redact: the value is written with only the sensitive part replaced, and the answer says so', async () => {
    const tools = await toolsFor('redact-pii@example.com', 'redact');
    for (const [i, { value, secret, kind, key }] of SENSITIVE.entries()) {
      const answer = await remember(tools, key ?? `note_${i}`, value);
      expect(answer, value).toMatch(/^Saved PERSONAL/);
      expect(answer).toContain(`was replaced with ${REDACTION_MARKERS[kind]} and never stored`);
      expect(answer).not.toContain(secret);
    }
    const rows = await rowsOf('redact-pii@example.com');
    expect(rows).toHaveLength(SENSITIVE.length);
    for (const { secret } of SENSITIVE) for (const row of rows) expect(row.value).not.toContain(secret);
    expect(await memory.forIdentity('redact-pii@example.com').retrieve('PERSONAL', 'note_1')).toBe(
      'card [redacted card number] exp 04/28',
    );
  });

  it('allow: the value is written as given', async () => {
    const tools = await toolsFor('allow-pii@example.com', 'allow');
    expect(await remember(tools, 'card', '4111 1111 1111 1111')).toBe('Saved PERSONAL/"card" = "4111 1111 1111 1111".');
    expect(await memory.forIdentity('allow-pii@example.com').retrieve('PERSONAL', 'card')).toBe('4111 1111 1111 1111');
  });

  it('a key that holds the sensitive part is not echoed either', async () => {
    const tools = await toolsFor('key-pii@example.com');
    const answer = await remember(tools, 'card_4111111111111111', 'my main card');
    expect(answer).toMatch(/^Not saved: PERSONAL looks like/);
    expect(answer).not.toContain('4111');
    expect(await rowsOf('key-pii@example.com')).toEqual([]);
  });

  it('logs and onSensitive get the kinds of what was kept out, never a value or key (userMemory with the env policy)', async () => {
    const logger = capturingLogger();
    const events: SensitiveValueEvent[] = [];
    const agentMemory = await userMemory(jobFor('logs-pii@example.com'), {
      store: memory,
      budgetMs: Infinity,
      logger,
      env: { MEMORY_PII_POLICY: 'redact' },
      tools: { onSensitive: (event) => events.push(event) },
    });
    const tools = agentMemory.agentOptions('x').tools as unknown as MemoryTools;
    await callTool(tools, 'remember', { category: 'PERSONAL', key: 'wifi', value: 'my wifi password is hunter2!' });
    await callTool(tools, 'remember', { category: 'PERSONAL', key: 'bank_pin', value: '4921' });
    expect(events).toEqual([
      { source: 'remember', action: 'redacted', category: 'PERSONAL', kinds: ['credential'], details: ['password'] },
      {
        source: 'remember',
        action: 'redacted',
        category: 'PERSONAL',
        kinds: ['credential'],
        details: ['credential-key'],
      },
    ]);
    const kept = logger.lines.filter((line) => line.includes('sensitive value kept out of memory'));
    expect(kept).toHaveLength(2);
    const logged = logger.lines.join('\n');
    for (const forbidden of ['hunter2', '4921', 'wifi password', '"wifi"', 'bank_pin']) {
      expect(logged).not.toContain(forbidden);
      expect(JSON.stringify(events)).not.toContain(forbidden);
    }

    // The refuse path logs the same way.
    const refusing = capturingLogger();
    const strict = await userMemory(jobFor('logs-pii-2@example.com'), {
      store: memory,
      budgetMs: Infinity,
      logger: refusing,
      env: {},
    });
    const strictTools = strict.agentOptions('x').tools as unknown as MemoryTools;
    expect(
      await callTool(strictTools, 'remember', { category: 'FACT', key: 'ssn', value: 'it is 123-45-6789' }),
    ).toMatch(/^Not saved/);
    expect(refusing.lines.filter((l) => l.includes('"action":"refused"'))).toHaveLength(1);
    expect(refusing.lines.join('\n')).not.toContain('123-45-6789');
  });
});
