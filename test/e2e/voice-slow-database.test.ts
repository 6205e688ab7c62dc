import '../support/quiet-rtc.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMemory } from '../../memory/index.js';
import type { VoiceCaller } from '../../scripts/lib/voice-caller.js';
import { ScriptedOpenAI, rules, systemText, userSaid } from '../support/openai-standin.js';
import { PgWireProxy } from '../support/pg-wire-proxy.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { releaseLiveKitClients, startStack, type Stack } from '../support/stack.js';

const ALICE = 'alice-slow-voice@example.com';
const GENERIC_HELLO = 'Hello! How can I help?';

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
  ],
  { text: 'OK.' },
);

/** A voice call while the database is slower than the session-start budget. */
describe('voice call with the database slower than the budget', () => {
  let db: TestDatabase;
  let proxy: PgWireProxy;
  let stack: Stack;
  let outDir: string;
  let alice: VoiceCaller | undefined;

  beforeAll(async () => {
    outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lkm-voice-slow-'));
    db = await createTestDatabase('slowvoice');
    const direct = await openMemory({ env: {}, databaseUrl: db.url, journal: false });
    try {
      await direct.provision(ALICE);
      await direct.forIdentity(ALICE).store('PREFERENCE', 'favorite_color', 'blue');
    } finally {
      await direct.close();
    }
    const front = await PgWireProxy.inFrontOf(db.url);
    proxy = front.proxy;
    stack = await startStack({
      model: new ScriptedOpenAI(script),
      env: {
        DATABASE_URL: front.url,
        MEMORY_BUDGET_MS: '300',
        AGENT_MODE: 'voice',
        STT_MODEL: 'gpt-4o-mini-transcribe',
        TTS_MODEL: 'gpt-4o-mini-tts',
        STT_MODE: 'realtime',
      },
    });
  }, 300_000);

  afterAll(async () => {
    await alice?.leave().catch(() => {});
    await stack?.stop();
    await releaseLiveKitClients();
    await proxy?.stop();
    await db?.drop();
  });

  it('the greeting is heard before memory arrives; once it lands, the spoken answer uses it', async () => {
    proxy.setDelay(1500); // every chunk, both ways: provisioning takes seconds
    alice = await stack.voiceCall(ALICE, outDir);
    const greeting = await alice.waitForAgentAudio({ after: 0, timeoutMs: 60_000, quietMs: 800 });
    // The greeting did not wait for the database: it is the generic one, and it was heard before
    // memory arrived. The worker logs on the same clock as now() (epoch ms): the prewarmed
    // connection makes memory land a few seconds in, possibly while the greeting still plays.
    expect(stack.model.speech.speeches.map((s) => String(s.input))).toEqual([GENERIC_HELLO]);
    expect(greeting.audibleSec).toBeGreaterThan(0.2);

    let landed: number | undefined;
    const deadline = Date.now() + 60_000;
    while (landed === undefined && Date.now() < deadline) {
      const line = stack.workerLog.find((l) => l.includes('late memory arrived'));
      landed = line ? (JSON.parse(line) as { time: number }).time : undefined;
      if (landed === undefined) await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(landed, 'the late memory never landed').toBeDefined();
    expect(greeting.firstAudibleAt).toBeLessThan(landed!);

    proxy.setDelay(0);
    stack.model.queueTranscript('what is my favorite color');
    const asked = await alice.say('test/fixtures/audio/alice-question.wav');
    const answer = await alice.waitForAgentAudio({ after: asked.endedAt, timeoutMs: 30_000, quietMs: 800 });
    expect(answer.audibleSec).toBeGreaterThan(0.2);
    expect(stack.model.speech.speeches.map((s) => String(s.input))).toContain('Your favourite colour is blue.');
  });
});
