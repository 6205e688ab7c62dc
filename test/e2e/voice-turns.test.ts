import '../support/quiet-rtc.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { identityToUserId } from '../../memory/index.js';
import { SAMPLE_RATE, type VoiceCaller } from '../../scripts/lib/voice-caller.js';
import { noise, silence } from '../support/audio.js';
import { ScriptedOpenAI, rules, systemText, userSaid } from '../support/openai-standin.js';
import { seededRandom } from '../support/random.js';
import { releaseLiveKitClients, startStack, type Stack } from '../support/stack.js';

const STORY = `Once upon a time ${'there was a caller who liked long stories, '.repeat(6)}the end.`;

const script = rules(
  [
    { when: userSaid(/tell me a long story/i), reply: { text: STORY } },
    { when: userSaid(/wait, stop/i), reply: { text: 'Sure, I stopped.' } },
    { when: userSaid(/are you still there/i), reply: { text: 'Yes, I am here.' } },
    { when: (req) => systemText(req).includes('first conversation'), reply: { text: 'Hello!' } },
  ],
  { text: 'OK.' },
);

/** Turn-taking in a voice call, on the realtime STT path: barge-in, and silence or noise that is no turn. */
describe('voice turns', () => {
  let stack: Stack;
  let outDir: string;
  const callers: VoiceCaller[] = [];

  beforeAll(async () => {
    outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lkm-voice-turns-'));
    stack = await startStack({
      model: new ScriptedOpenAI(script),
      env: {
        AGENT_MODE: 'voice',
        STT_MODEL: 'gpt-4o-mini-transcribe',
        TTS_MODEL: 'gpt-4o-mini-tts',
        STT_MODE: 'realtime',
      },
    });
  }, 300_000);

  afterAll(async () => {
    for (const caller of callers) await caller.leave().catch(() => {});
    if (stack) fs.writeFileSync(path.join(outDir, 'worker.log'), stack.workerLog.join('\n'));
    await stack?.stop();
    await releaseLiveKitClients();
  });

  async function call(identity: string): Promise<VoiceCaller> {
    const caller = await stack.voiceCall(identity, outDir);
    callers.push(caller);
    await caller.waitForAgentAudio({ after: 0, timeoutMs: 60_000, quietMs: 800 }); // the greeting
    return caller;
  }

  const chatsOf = (identity: string) =>
    stack.model.chatRequests().filter((r) => (r.body as { user?: string }).user === identityToUserId(identity));

  it('barge-in: the caller talks over a long answer; the agent stops within 1 s and the new turn is heard', async () => {
    const caller = await call('barge-in@example.com');
    stack.model.queueTranscript('tell me a long story');
    const asked = await caller.say('test/fixtures/audio/alice-question.wav');
    // The story is about 20 s of speech: wait until it has been playing for a second.
    const deadline = Date.now() + 30_000;
    while (caller.heard(asked.endedAt).audibleSec < 1 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect(caller.heard(asked.endedAt).audibleSec).toBeGreaterThanOrEqual(1);

    stack.model.queueTranscript('wait, stop, actually');
    const interrupted = await caller.say('test/fixtures/audio/interrupt.wav', { trailingSilenceSec: 0.2 });
    // From the moment the caller started talking, the agent's audio must fall silent within 1 s
    // (and stay so for at least 300 ms: the story was cut, not paused between words).
    const levels = caller.heard(interrupted.startedAt).levels;
    const loud = (at: number) => levels.some((l) => l.at >= at && l.at < at + 300 && l.rms > 300);
    const quietFrom = levels.find((l) => l.at >= interrupted.startedAt && !loud(l.at))?.at;
    expect(quietFrom, 'the agent never fell silent while the caller talked').toBeDefined();
    expect(quietFrom! - interrupted.startedAt).toBeLessThan(1000);

    await caller.waitForAgentAudio({ after: interrupted.endedAt, timeoutMs: 30_000, quietMs: 800 });
    const said = chatsOf('barge-in@example.com').map((r) => JSON.stringify(r.body));
    expect(said.some((body) => body.includes('wait, stop, actually'))).toBe(true);
    expect(stack.model.speech.speeches.some((s) => String(s.input) === 'Sure, I stopped.')).toBe(true);
  });

  it('ten seconds of silence, then ten of noise: no turn, no model call, and the call goes on', async () => {
    const caller = await call('quiet@example.com');
    const before = chatsOf('quiet@example.com').length;
    await caller.say(
      { sampleRate: SAMPLE_RATE, channels: 1, samples: silence(10, SAMPLE_RATE) },
      { trailingSilenceSec: 0 },
    );
    // Broadband noise at about -26 dBFS (a loud fan): loud enough for a level detector to call it
    // speech, and it reaches the transcription path; it must not become a turn.
    await caller.say(
      { sampleRate: SAMPLE_RATE, channels: 1, samples: noise(10, SAMPLE_RATE, 0.05, seededRandom(7)) },
      { trailingSilenceSec: 1 },
    );
    expect(chatsOf('quiet@example.com').length).toBe(before);
    // Still alive: a real question gets a spoken answer.
    stack.model.queueTranscript('are you still there');
    const asked = await caller.say('test/fixtures/audio/bob-question.wav');
    const answer = await caller.waitForAgentAudio({ after: asked.endedAt, timeoutMs: 30_000, quietMs: 800 });
    expect(answer.audibleSec).toBeGreaterThan(0.2);
    expect(chatsOf('quiet@example.com').length).toBeGreaterThan(before);
  });
});
