import fs from 'node:fs';
import { initializeLogger, llm, voice } from '@livekit/agents';
import * as lkOpenAI from '@livekit/agents-plugin-openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MemoryError, identityToUserId, openMemory, piiSettings, type MemoryStore } from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import {
  DEFAULT_CATEGORIES,
  MEMORY_BLOCK_OPEN,
  RECALL_BLOCK_OPEN,
  callerTurns,
  extractAndStore,
  parseExtractedFacts,
  userMemory,
  type JobContextLike,
  type MemoryLogger,
} from '../../plugins/index.js';
import { tempDataDir } from '../support/backends.js';
import { extractionRule, extractionTurns, isExtractionRequest } from '../support/extraction-script.js';
import { ScriptedHttpError, ScriptedOpenAI, rules } from '../support/openai-standin.js';

/**
 * After-call extraction with LiveKit Agents' real openai.LLM talking to the scripted stand-in (the
 * only stand-in: for the paid model) and a real embedded database.
 */

const categories = [...DEFAULT_CATEGORIES];
const TURNS = [
  'hi there',
  'my favourite drink is mango lassi',
  'my sister is called Ines, and I live in Porto',
  'my card number is 4111 1111 1111 1111',
  'my wifi password is hunter2!',
  'my dog is a beagle named Rufus',
];

function capturingLogger(): MemoryLogger & { lines: string[] } {
  const lines: string[] = [];
  const keep = (level: string) => (fields: Record<string, unknown>, message: string) =>
    lines.push(JSON.stringify({ level, ...fields, message }));
  return { lines, info: keep('info'), warn: keep('warn'), error: keep('error') };
}

describe('callerTurns and the untrusted answer', () => {
  it("keeps only the caller's own words: no assistant, system, tool or injected memory text", () => {
    const ctx = llm.ChatContext.empty();
    ctx.addMessage({ role: 'system', content: `instructions ${MEMORY_BLOCK_OPEN} block` });
    ctx.addMessage({ role: 'assistant', content: 'Hello, how can I help?' });
    ctx.addMessage({ role: 'user', content: '  my favourite drink is tea  ' });
    ctx.insert(llm.FunctionCall.create({ callId: 'c1', name: 'recall', args: '{}' }));
    ctx.insert(
      llm.FunctionCallOutput.create({ callId: 'c1', name: 'recall', output: 'FACT/"x" = "y"', isError: false }),
    );
    ctx.addMessage({ role: 'user', content: `${RECALL_BLOCK_OPEN}\nsomething recalled\n</recalled_memory>` });
    ctx.addMessage({ role: 'developer', content: 'note' });
    ctx.addMessage({ role: 'user', content: '' });
    ctx.addMessage({ role: 'user', content: 'bye' });
    expect(callerTurns(ctx)).toEqual(['my favourite drink is tea', 'bye']);
  });

  it('validates every proposed fact and caps their number', () => {
    const text = JSON.stringify({
      facts: [
        { category: 'PREFERENCE', key: 'favorite_drink', value: 'tea' },
        { category: 'SECRETS', key: 'x', value: 'not an allowed category' },
        { category: 'FACT', key: 'bad\nkey', value: 'control character in the key' },
        { category: 'FACT', key: 'long', value: 'x'.repeat(501) },
        { category: 'FACT', key: 'empty', value: '   ' },
        { category: 'FACT', key: 'number', value: 42 },
        'not an object',
        { category: 'PREFERENCE', key: 'favorite_drink', value: 'coffee' },
        { category: 'FACT', key: 'a', value: '1' },
        { category: 'FACT', key: 'b', value: '2' },
      ],
    });
    const parsed = parseExtractedFacts(text, { categories, maxFacts: 2 });
    expect(parsed.facts).toEqual([
      { category: 'PREFERENCE', key: 'favorite_drink', value: 'tea' },
      { category: 'FACT', key: 'a', value: '1' },
    ]);
    expect(parsed.rejected).toBe(8);
    // A bare array and a fenced answer are taken too.
    expect(
      parseExtractedFacts('[{"category":"FACT","key":"k","value":"v"}]', { categories, maxFacts: 5 }).facts,
    ).toHaveLength(1);
    expect(
      parseExtractedFacts('Here you go:\n```json\n{"facts": [{"category":"FACT","key":"k","value":"v"}]}\n```', {
        categories,
        maxFacts: 5,
      }).facts,
    ).toHaveLength(1);
    for (const bad of ['I could not find anything.', '{"facts": "none"}', '{"items": []}', 'null']) {
      expect(() => parseExtractedFacts(bad, { categories, maxFacts: 5 }), bad).toThrow(MemoryError);
      try {
        parseExtractedFacts(bad, { categories, maxFacts: 5 });
      } catch (error) {
        expect((error as MemoryError).code).toBe('INVALID_RESPONSE');
      }
    }
  });
});

describe('extractAndStore (real openai.LLM to the stand-in, real embedded database)', () => {
  let dataDir: string;
  let memory: MemoryStore;
  const standin = new ScriptedOpenAI();
  let model: lkOpenAI.LLM;
  const pii = piiSettings();

  const rowsOf = (identity: string) =>
    transportOf(memory).query<{ category: string; key: string; value: string; updated_at: string }>(
      'select category, key, value, updated_at::text as updated_at from public.memories where user_id = $1 order by category, key',
      [identityToUserId(identity)],
    );
  const handleFor = async (identity: string) => {
    await memory.provision(identity);
    return memory.forIdentity(identity);
  };

  beforeAll(async () => {
    initializeLogger({ pretty: false, level: 'warn' });
    dataDir = tempDataDir('extract');
    memory = await openMemory({ env: {}, dataDir, serve: false });
    await standin.start();
    model = new lkOpenAI.LLM({ baseURL: standin.baseURL, apiKey: 'x', model: 'scripted' });
  });
  afterAll(async () => {
    await standin.stop();
    await memory?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  beforeEach(() => {
    standin.clear();
    standin.setResponder(rules([extractionRule()]));
  });

  it('stores the new facts, sends only the turns, refuses PII, and a second extraction of the same call stores nothing', async () => {
    const handle = await handleFor('extract-1@example.com');
    const first = await extractAndStore({ handle, llm: model, turns: TURNS, categories, pii });
    expect(first).toMatchObject({
      status: 'stored',
      turns: TURNS.length,
      facts: 5,
      stored: 3,
      unchanged: 0,
      refused: 2,
      failed: 0,
    });
    const rows = await rowsOf('extract-1@example.com');
    expect(rows.map(({ category, key, value }) => ({ category, key, value }))).toEqual([
      { category: 'PERSONAL', key: 'dog', value: 'a beagle named Rufus' },
      { category: 'PERSONAL', key: 'sister', value: 'called Ines, and I live in Porto' },
      { category: 'PREFERENCE', key: 'favorite_drink', value: 'mango lassi' },
    ]);
    for (const row of rows) expect(row.value).not.toMatch(/4111|hunter2/);

    const [request] = standin.chatRequests().filter(isExtractionRequest);
    expect(extractionTurns(request!)).toEqual(TURNS);
    expect(request!.messages.map((m) => m.role)).toEqual(['system', 'user']);

    // The same call again: nothing new is written, not even a timestamp.
    const second = await extractAndStore({ handle, llm: model, turns: TURNS, categories, pii });
    expect(second).toMatchObject({ status: 'nothing', facts: 5, stored: 0, unchanged: 3, refused: 2 });
    expect(await rowsOf('extract-1@example.com')).toEqual(rows);
  });

  it('never replaces what the caller stored, and a value already stored under another key is not stored twice', async () => {
    const handle = await handleFor('extract-2@example.com');
    await handle.store('PREFERENCE', 'favorite_drink', 'green tea');
    await handle.store('PERSONAL', 'pet', 'A beagle named  Rufus');
    const before = await rowsOf('extract-2@example.com');
    const report = await extractAndStore({ handle, llm: model, turns: TURNS, categories, pii });
    expect(report).toMatchObject({ stored: 1, conflicts: 1, unchanged: 1, refused: 2 });
    const after = await rowsOf('extract-2@example.com');
    expect(after.filter((r) => before.some((b) => b.key === r.key))).toEqual(before);
    expect(after.map((r) => r.key).sort()).toEqual(['favorite_drink', 'pet', 'sister']);
  });

  it('redact policy: extracted facts are stored with the sensitive part replaced', async () => {
    const handle = await handleFor('extract-3@example.com');
    const report = await extractAndStore({
      handle,
      llm: model,
      turns: ['my card number is 4111 1111 1111 1111'],
      categories,
      pii: piiSettings({ policy: 'redact' }),
    });
    expect(report).toMatchObject({ stored: 1, redacted: 1, refused: 0 });
    expect(await handle.retrieve('PERSONAL', 'card_number')).toBe('[redacted card number]');
  });

  it('a failing model, an unusable answer or the time limit: reported, nothing lost, nothing written', async () => {
    const handle = await handleFor('extract-4@example.com');
    await handle.store('FACT', 'during_call', 'stored by remember during the call');
    const before = await rowsOf('extract-4@example.com');

    standin.setResponder(
      rules([
        extractionRule(() => {
          throw new ScriptedHttpError(500, 'scripted outage');
        }),
      ]),
    );
    expect(await extractAndStore({ handle, llm: model, turns: TURNS, categories, pii })).toMatchObject({
      status: 'failed',
      stored: 0,
      errors: ['MODEL_FAILED'],
    });

    standin.setResponder(rules([extractionRule({ text: 'Sorry, I cannot help with that.' })]));
    expect(await extractAndStore({ handle, llm: model, turns: TURNS, categories, pii })).toMatchObject({
      status: 'failed',
      stored: 0,
      errors: ['INVALID_RESPONSE'],
    });

    // The stand-in answers only after 5 s; the extraction's limit is 300 ms.
    standin.setResponder(rules([extractionRule({ text: '{"facts": []}', delayMs: 5_000 })]));
    expect(await extractAndStore({ handle, llm: model, turns: TURNS, categories, pii, timeoutMs: 300 })).toMatchObject({
      status: 'timeout',
      stored: 0,
    });

    expect(await rowsOf('extract-4@example.com')).toEqual(before);
  });

  it('a call where the caller said nothing asks no model', async () => {
    const handle = await handleFor('extract-5@example.com');
    expect(await extractAndStore({ handle, llm: model, turns: [], categories, pii })).toMatchObject({
      status: 'no-turns',
    });
    expect(standin.chatRequests()).toEqual([]);
  });

  it("userMemory: the job's shutdown runs extraction over the session's history; the log has counts, never values", async () => {
    const identity = 'extract-session@example.com';
    await memory.provision(identity);
    await memory.forIdentity(identity).store('PERSONAL', 'home_city', 'Lisbon');
    const callbacks: (() => Promise<void>)[] = [];
    const job: JobContextLike = {
      proc: {},
      job: { id: 'job-extract' },
      waitForParticipant: () => Promise.resolve({ identity }),
      addShutdownCallback: (callback) => callbacks.push(callback),
    };
    const logger = capturingLogger();
    const agentMemory = await userMemory(job, {
      store: memory,
      budgetMs: Infinity,
      logger,
      extract: { enabled: true, timeoutMs: 10_000 },
      env: {},
    });
    const session = new voice.AgentSession({ llm: model });
    agentMemory.attach(session);
    for (const text of TURNS) {
      session.history.addMessage({ role: 'user', content: text });
      session.history.addMessage({ role: 'assistant', content: `You said: ${text}` });
    }
    for (const callback of callbacks) await callback();

    const [request] = standin.chatRequests().filter(isExtractionRequest);
    expect(extractionTurns(request!)).toEqual(TURNS);
    const sent = JSON.stringify(request!.body);
    expect(sent).not.toContain('Lisbon');
    expect(sent).not.toContain(MEMORY_BLOCK_OPEN);
    expect(sent).not.toContain('You said');

    const done = logger.lines.find((line) => line.includes('memory extracted after the call'));
    expect(JSON.parse(done!)).toMatchObject({ status: 'stored', stored: 3, refused: 2 });
    const logged = logger.lines.join('\n');
    expect(logger.lines.filter((l) => l.includes('sensitive value kept out of memory'))).toHaveLength(2);
    for (const value of ['mango', 'lassi', 'Ines', 'Porto', 'Rufus', 'beagle', '4111', 'hunter2', 'Lisbon']) {
      expect(logged).not.toContain(value);
    }
    // Once per call: a second shutdown asks nothing more.
    await agentMemory.close();
    expect(standin.chatRequests().filter(isExtractionRequest)).toHaveLength(1);
    expect(await memory.forIdentity(identity).retrieve('PREFERENCE', 'favorite_drink')).toBe('mango lassi');
  });
});
