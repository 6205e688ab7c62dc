import '../support/quiet-rtc.js';
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFailed } from 'vitest';
import { identityToUserId, openMemory, type MemoryStore } from '../../memory/index.js';
import { RECALL_BLOCK_OPEN } from '../../plugins/index.js';
import {
  lastUserText,
  messageText,
  rules,
  systemText,
  userSaid,
  type RecordedRequest,
} from '../support/openai-standin.js';
import { PgWireProxy } from '../support/pg-wire-proxy.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { releaseLiveKitClients, startStack, type Stack } from '../support/stack.js';

const ALICE = 'alice-recall@example.com';
const BOB = 'bob-recall@example.com';
const BLOCK_SIZE = 5;

/** The recall block of a request: the system message(s) carrying <recalled_memory>, joined. */
function recalledText(request: RecordedRequest): string {
  return request.messages
    .filter((m) => m.role === 'system' && messageText(m).includes(RECALL_BLOCK_OPEN))
    .map(messageText)
    .join('\n');
}

/** The scripted model answers from what the request shows it. */
const script = rules(
  [
    {
      when: userSaid(/dentist/i),
      reply: (req) => {
        const name = /"dentist_name": "([^"]+)"/.exec(recalledText(req))?.[1];
        return { text: name ? `Your dentist is ${name}.` : 'I do not know your dentist.' };
      },
    },
  ],
  { text: 'Hello!' },
);

/** Seed a user whose dentist is older than the BLOCK_SIZE newest memories (so not in the block). */
async function seed(store: MemoryStore, identity: string, dentist: string): Promise<void> {
  await store.provision(identity);
  const user = store.forIdentity(identity);
  await user.store('PERSONAL', 'dentist_name', dentist);
  for (let i = 0; i < 3 * BLOCK_SIZE; i += 1) await user.store('FACT', `filler_${i}`, `an unrelated note number ${i}`);
}

describe('per-turn recall in a real call: the memory that matches the turn reaches its model request, within a budget', () => {
  let db: TestDatabase;
  let proxy: PgWireProxy;
  let stack: Stack;

  beforeAll(async () => {
    db = await createTestDatabase('recall');
    const direct = await openMemory({ env: {}, databaseUrl: db.url, journal: false });
    try {
      await seed(direct, ALICE, 'Dr. Okafor');
      await seed(direct, BOB, 'Dr. Lindqvist');
    } finally {
      await direct.close();
    }
    const front = await PgWireProxy.inFrontOf(db.url);
    proxy = front.proxy;
    stack = await startStack({
      env: { DATABASE_URL: front.url, MEMORY_BLOCK_MAX_ENTRIES: String(BLOCK_SIZE), MEMORY_RECALL_BUDGET_MS: '300' },
    });
    stack.model.setResponder(script);
  }, 300_000);

  afterAll(async () => {
    await stack?.stop();
    await proxy?.stop();
    await releaseLiveKitClients();
    await db?.drop();
  });

  // A failure here is a worker's story: show the end of its log with it.
  beforeEach(() =>
    onTestFailed(() => console.log(`worker log (last lines):\n${stack.workerLog.slice(-80).join('\n')}`)),
  );

  const requestsOf = (identity: string) =>
    stack.model.chatRequests().filter((r) => (r.body as { user?: string }).user === identityToUserId(identity));

  it('alice and bob ask about "my dentist" at the same time: each request recalls their own, never the other', async () => {
    const [alice, bob] = await Promise.all([stack.join(ALICE), stack.join(BOB)]);
    await Promise.all([alice.waitForGreeting(), bob.waitForGreeting()]);
    // The dentist is not in either block: it is older than the newest BLOCK_SIZE memories.
    for (const r of [...requestsOf(ALICE), ...requestsOf(BOB)]) expect(systemText(r)).not.toContain('dentist');

    const [aliceAnswer, bobAnswer] = await Promise.all([
      alice.say('who is my dentist again?'),
      bob.say('remind me of my dentist please'),
    ]);
    expect(aliceAnswer).toBe('Your dentist is Dr. Okafor.');
    expect(bobAnswer).toBe('Your dentist is Dr. Lindqvist.');

    const aliceTurn = requestsOf(ALICE).filter((r) => /dentist/.test(lastUserText(r) ?? ''));
    expect(aliceTurn.length).toBeGreaterThan(0);
    expect(recalledText(aliceTurn[0]!)).toContain('"dentist_name": "Dr. Okafor"');
    // Recall brings only memories not in the block, and at most three.
    expect(recalledText(aliceTurn[0]!).match(/^- /gm)?.length ?? 0).toBeLessThanOrEqual(3);
    for (const r of requestsOf(ALICE)) expect(JSON.stringify(r.body)).not.toContain('Lindqvist');
    for (const r of requestsOf(BOB)) expect(JSON.stringify(r.body)).not.toContain('Okafor');

    // Recalled memories are per request: the conversation history keeps none of them.
    const next = await alice.say('thanks, that is all');
    expect(next).toBe('Hello!');
    const last = requestsOf(ALICE).at(-1)!;
    expect(recalledText(last)).toBe('');
    expect(JSON.stringify(last.body)).not.toContain(RECALL_BLOCK_OPEN);
    await Promise.all([alice.leave(), bob.leave()]);
  });

  it('a database slower than the recall budget: the turn goes on without recall, and nothing is recalled late into it', async () => {
    const alice = await stack.join(ALICE);
    await alice.waitForGreeting();
    const before = stack.workerLog.length;
    proxy.setDelay(2000);
    try {
      expect(await alice.say('what was my dentist called?')).toBe('I do not know your dentist.');
    } finally {
      proxy.setDelay(0);
    }
    const turn = requestsOf(ALICE).filter((r) => /dentist was my|dentist called/.test(lastUserText(r) ?? ''));
    expect(turn.length).toBeGreaterThan(0);
    for (const r of turn) expect(recalledText(r)).toBe('');
    const logged = stack.workerLog.slice(before).filter((line) => line.includes('memory recalled for the turn'));
    expect(logged.map((line) => (JSON.parse(line) as { status: string }).status)).toContain('late');
    await alice.leave();
  });
});
