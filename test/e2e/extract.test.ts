import '../support/quiet-rtc.js';
import { initializeLogger } from '@livekit/agents';
import * as lkOpenAI from '@livekit/agents-plugin-openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFailed } from 'vitest';
import { identityToUserId, openMemory, piiSettings, type MemoryStore } from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import { DEFAULT_CATEGORIES, MEMORY_BLOCK_OPEN, RECALL_BLOCK_OPEN, extractAndStore } from '../../plugins/index.js';
import { rememberColour } from '../support/colour-script.js';
import { extractionReply, extractionTurns, isExtractionRequest } from '../support/extraction-script.js';
import {
  ScriptedHttpError,
  lastToolResult,
  messageText,
  rules,
  toolResultFor,
  userSaid,
  type RecordedRequest,
} from '../support/openai-standin.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { releaseLiveKitClients, startStack, type Stack } from '../support/stack.js';

/**
 * After-call extraction in real calls: real livekit-server, the real worker (MEMORY_EXTRACT=on)
 * and its job processes, real PostgreSQL; the model is the scripted stand-in, which records the
 * extraction request so the test can see what the worker sent.
 */

const ALICE = 'alice-extract@example.com';
const BOB = 'bob-extract@example.com';
const CAROL = 'carol-extract@example.com';
const BLOCK_SIZE = 5;
const SAID = [
  'who is my dentist again?',
  'my favourite drink is mango lassi',
  'my card number is 4111 1111 1111 1111',
  'my wifi password is hunter2!',
  'my dog is a beagle named Rufus',
];

/**
 * The worker's log without the fields agents-js marks as conversation content (`lk.pii.*`, e.g.
 * the agent's words in "playout completed"): everything the memory layer and the plugin logged.
 */
function withoutAgentsPii(lines: readonly string[]): string {
  return lines
    .map((line) => {
      if (!line.startsWith('{')) return line;
      const fields = JSON.parse(line) as Record<string, unknown>;
      for (const name of Object.keys(fields)) if (name.startsWith('lk.pii.')) delete fields[name];
      return JSON.stringify(fields);
    })
    .join('\n');
}

const userOf = (request: RecordedRequest) => (request.body as { user?: string }).user;

/** The recall block of a request: the system message(s) carrying <recalled_memory>, joined. */
function recalledText(request: RecordedRequest): string {
  return request.messages
    .filter((m) => m.role === 'system' && messageText(m).includes(RECALL_BLOCK_OPEN))
    .map(messageText)
    .join('\n');
}

const script = rules(
  [
    {
      // Bob's extraction fails: the outage must lose nothing stored during his call.
      when: (req) => isExtractionRequest(req) && userOf(req) === identityToUserId(BOB),
      reply: () => {
        throw new ScriptedHttpError(503, 'scripted outage');
      },
    },
    { when: isExtractionRequest, reply: extractionReply },
    {
      when: userSaid(/dentist/i),
      reply: (req) => {
        const name = /"dentist_name": "([^"]+)"/.exec(recalledText(req))?.[1];
        return { text: name ? `Your dentist is ${name}.` : 'I do not know your dentist.' };
      },
    },
    rememberColour(/I like the colou?r (\w+)/i),
    { when: toolResultFor(), reply: (req) => ({ text: `Done: ${String(lastToolResult(req)!.value)}` }) },
  ],
  { text: 'OK.' },
);

describe('after-call extraction in a real call (MEMORY_EXTRACT=on)', () => {
  let db: TestDatabase;
  let direct: MemoryStore;
  let stack: Stack;

  const rowsOf = (identity: string) =>
    transportOf(direct).query<{ category: string; key: string; value: string; updated_at: string; write_seq: string }>(
      'select category, key, value, updated_at::text as updated_at, write_seq::text as write_seq from public.memories where user_id = $1 order by category, key',
      [identityToUserId(identity)],
    );

  /** The worker's log line `message` for this user, waiting for it (the extraction runs after the call). */
  async function logLine(identity: string, message: string): Promise<Record<string, unknown>> {
    const userId = identityToUserId(identity);
    for (let i = 0; i < 600; i += 1) {
      const line = stack.workerLog.find((l) => l.includes(message) && l.includes(userId));
      if (line) return JSON.parse(line) as Record<string, unknown>;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`no "${message}" in the worker log for ${identity}`);
  }

  beforeAll(async () => {
    db = await createTestDatabase('extract');
    direct = await openMemory({ env: {}, databaseUrl: db.url, journal: false });
    await direct.provision(ALICE);
    const alice = direct.forIdentity(ALICE);
    // The dentist is older than the newest BLOCK_SIZE memories: recall brings it, the block does not.
    await alice.store('PERSONAL', 'dentist_name', 'Dr. Okafor');
    for (let i = 0; i < 3 * BLOCK_SIZE; i += 1)
      await alice.store('FACT', `filler_${i}`, `an unrelated note number ${i}`);
    // The newest: in the block.
    await alice.store('PERSONAL', 'home_city', 'Lisbon');
    stack = await startStack({
      env: {
        DATABASE_URL: db.url,
        MEMORY_EXTRACT: 'on',
        MEMORY_BLOCK_MAX_ENTRIES: String(BLOCK_SIZE),
        MEMORY_RECALL_BUDGET_MS: '1000',
      },
    });
    stack.model.setResponder(script);
    initializeLogger({ pretty: false, level: 'warn' });
  }, 300_000);

  afterAll(async () => {
    await stack?.stop();
    await direct?.close();
    await releaseLiveKitClients();
    await db?.drop();
  });

  beforeEach(() =>
    onTestFailed(() => console.log(`worker log (last lines):\n${stack.workerLog.slice(-80).join('\n')}`)),
  );

  it("stores the caller's facts after the call, from their words only, never the block, recall or PII; a repeat stores nothing", async () => {
    const before = await rowsOf(ALICE);
    const alice = await stack.join(ALICE);
    await alice.waitForGreeting();
    // Recall works in the call: the dentist reaches the model, from recall (not the block).
    expect(await alice.say(SAID[0]!)).toBe('Your dentist is Dr. Okafor.');
    for (const line of SAID.slice(1)) expect(await alice.say(line)).toBe('OK.');
    // Nothing is extracted while the call goes on.
    expect(stack.model.chatRequests().filter(isExtractionRequest)).toEqual([]);
    const callRequests = stack.model.chatRequests().filter((r) => userOf(r) === identityToUserId(ALICE));
    expect(callRequests.some((r) => messageText(r.messages[0]).includes('Lisbon'))).toBe(true); // the block
    expect(callRequests.some((r) => recalledText(r).includes('Dr. Okafor'))).toBe(true); // recall
    await alice.leave();

    const done = await logLine(ALICE, 'memory extracted after the call');
    expect(done).toMatchObject({ status: 'stored', turns: SAID.length, facts: 4, stored: 2, refused: 2, failed: 0 });

    // What the worker sent: the caller's turns, nothing of the block or of recall, nothing the agent said.
    const extraction = stack.model.chatRequests().filter(isExtractionRequest);
    expect(extraction).toHaveLength(1);
    expect(userOf(extraction[0]!)).toBe(identityToUserId(ALICE));
    expect(extractionTurns(extraction[0]!)).toEqual(SAID);
    const sent = JSON.stringify(extraction[0]!.messages);
    for (const injected of [
      MEMORY_BLOCK_OPEN,
      RECALL_BLOCK_OPEN,
      'Lisbon',
      'Okafor',
      'dentist_name',
      'filler',
      'OK.',
    ]) {
      expect(sent).not.toContain(injected);
    }

    // Stored: the two harmless facts; not the card number, not the password; nothing else changed.
    const after = await rowsOf(ALICE);
    const added = after.filter((r) => !before.some((b) => b.key === r.key));
    expect(added.map(({ category, key, value }) => ({ category, key, value }))).toEqual([
      { category: 'PERSONAL', key: 'dog', value: 'a beagle named Rufus' },
      { category: 'PREFERENCE', key: 'favorite_drink', value: 'mango lassi' },
    ]);
    expect(after.filter((r) => before.some((b) => b.key === r.key))).toEqual(before);
    for (const row of after) expect(row.value).not.toMatch(/4111|hunter2/);

    // The same call extracted again (its turns as the worker sent them, the same model): nothing new,
    // no row added, no updated_at or write_seq moved.
    const model = new lkOpenAI.LLM({
      baseURL: stack.model.baseURL,
      apiKey: 'x',
      model: 'scripted',
      user: identityToUserId(ALICE),
    });
    const again = await extractAndStore({
      handle: direct.forIdentity(ALICE),
      llm: model,
      turns: extractionTurns(extraction[0]!),
      categories: [...DEFAULT_CATEGORIES],
      pii: piiSettings(),
    });
    expect(again).toMatchObject({ status: 'nothing', facts: 4, stored: 0, unchanged: 2, refused: 2 });
    expect(await rowsOf(ALICE)).toEqual(after);

    // The worker's log has counts and kinds, never what was said or stored. (agents-js itself logs
    // what the agent said under `lk.pii.*` fields, its marker for conversation content: not ours.)
    expect(stack.workerLog.filter((l) => l.includes('sensitive value kept out of memory'))).toHaveLength(2);
    const log = withoutAgentsPii(stack.workerLog);
    for (const value of ['mango', 'lassi', 'Rufus', 'beagle', '4111', 'hunter2', 'Okafor', 'Lisbon']) {
      expect(log).not.toContain(value);
    }
  });

  it('a failed extraction is logged and loses nothing stored during the call', async () => {
    const bob = await stack.join(BOB);
    await bob.waitForGreeting();
    expect(await bob.say('I like the colour teal')).toContain('Saved PREFERENCE/"favorite_color" = "teal"');
    expect(await bob.say('my favourite drink is black coffee')).toBe('OK.');
    await bob.leave();

    const failed = await logLine(BOB, 'after-call extraction failed');
    expect(failed).toMatchObject({ status: 'failed', stored: 0, errors: ['MODEL_FAILED'] });
    expect((await rowsOf(BOB)).map(({ category, key, value }) => ({ category, key, value }))).toEqual([
      { category: 'PREFERENCE', key: 'favorite_color', value: 'teal' },
    ]);
    expect(withoutAgentsPii(stack.workerLog)).not.toContain('black coffee');
  });

  it('none when the caller denied consent: the model is not even asked', async () => {
    await direct.setConsent(CAROL, 'denied');
    const carol = await stack.join(CAROL);
    await carol.waitForGreeting();
    expect(await carol.say('my favourite drink is rooibos')).toBe('OK.');
    expect(await carol.say('my dog is a poodle named Bijou')).toBe('OK.');
    await carol.leave();

    const done = await logLine(CAROL, 'memory extracted after the call');
    expect(done).toMatchObject({ status: 'no-consent', stored: 0 });
    const carolId = identityToUserId(CAROL);
    expect(stack.model.chatRequests().filter((r) => isExtractionRequest(r) && userOf(r) === carolId)).toEqual([]);
    expect(await rowsOf(CAROL)).toEqual([]);
  });
});
