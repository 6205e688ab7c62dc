import '../support/quiet-rtc.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { identityToUserId } from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import { parseWav } from '../../scripts/lib/wav.js';
import { type VoiceCaller, measureAudible } from '../../scripts/lib/voice-caller.js';
import { FULL_SCALE, encodeWav, pcmFromBytes } from '../support/audio.js';
import { ScriptedOpenAI, lastToolResult, rules, systemText, toolResultFor } from '../support/openai-standin.js';
import { recallColour, rememberColour } from '../support/colour-script.js';
import type { TranscriptionRecord } from '../support/speech-standin.js';
import { releaseLiveKitClients, startStack, type Stack } from '../support/stack.js';

const ALICE = 'alice-voice@example.com';
const BOB = 'bob-voice@example.com';
const FIXTURES = path.resolve('test/fixtures/audio');
const fixture = (name: string) => path.join(FIXTURES, name);

/** What a real model would do with these transcripts, decided from the request alone. */
const script = rules(
  [
    rememberColour(/remember my favou?rite colou?r is (\w+)/i),
    recallColour,
    { when: toolResultFor(), reply: (req) => ({ text: `Done: ${String(lastToolResult(req)!.value)}` }) },
    { when: (req) => systemText(req).includes('first conversation'), reply: { text: 'Hello, nice to meet you!' } },
    { when: (req) => systemText(req).includes('returning'), reply: { text: 'Welcome back!' } },
  ],
  { text: 'OK.' },
);

/** Seconds of speech in recorded PCM: 10 ms windows above -34 dBFS (the stand-in's speech level). */
function speechSeconds(record: TranscriptionRecord): number {
  const wav = { sampleRate: record.sampleRate, channels: 1 as const, samples: pcmFromBytes(record.audio) };
  return measureAudible(wav, 0.02 * FULL_SCALE).audibleSec;
}

/** The same measure on the fixture the caller played. */
function fixtureSpeechSeconds(name: string): number {
  return measureAudible(parseWav(fs.readFileSync(fixture(name))), 0.02 * FULL_SCALE).audibleSec;
}

// rtc-node's native side is released once, after every call in this file (not per suite).
afterAll(() => releaseLiveKitClients());

for (const mode of ['realtime', 'http'] as const) {
  describe(`a voice call with STT over ${mode === 'realtime' ? 'the realtime websocket' : 'HTTP, cut by the VAD'}`, () => {
    let stack: Stack;
    let outDir: string;
    const callers: VoiceCaller[] = [];

    beforeAll(async () => {
      outDir = fs.mkdtempSync(path.join(os.tmpdir(), `lkm-voice-${mode}-`));
      stack = await startStack({
        model: new ScriptedOpenAI(script),
        env: { AGENT_MODE: 'voice', STT_MODEL: 'gpt-4o-mini-transcribe', TTS_MODEL: 'gpt-4o-mini-tts', STT_MODE: mode },
      });
    }, 300_000);

    afterAll(async () => {
      for (const caller of callers) await caller.leave().catch(() => {});
      // What the worker said and what the speech stand-in got, next to the recordings.
      if (stack) {
        fs.writeFileSync(path.join(outDir, 'worker.log'), stack.workerLog.join('\n'));
        for (const t of stack.model.speech.transcriptions) {
          fs.writeFileSync(
            path.join(outDir, `transcribed-${t.index}.wav`),
            encodeWav(pcmFromBytes(t.audio), t.sampleRate),
          );
        }
        fs.writeFileSync(
          path.join(outDir, 'speech.json'),
          JSON.stringify(
            {
              transcriptions: stack.model.speech.transcriptions.map(({ audio: _a, ...t }) => t),
              speeches: stack.model.speech.speeches.map(({ audio: _a, ...s }) => s),
            },
            null,
            2,
          ),
        );
      }
      await stack?.stop();
    });

    async function call(identity: string): Promise<VoiceCaller> {
      const caller = await stack.voiceCall(identity, outDir);
      callers.push(caller);
      return caller;
    }

    /** Say a fixture once the agent is quiet, and wait for the agent's spoken answer. */
    async function turn(caller: VoiceCaller, transcript: string, wav: string) {
      stack.model.queueTranscript(transcript);
      const said = await caller.say(fixture(wav));
      const answer = await caller.waitForAgentAudio({ after: said.endedAt, timeoutMs: 30_000, quietMs: 800 });
      return { said, answer };
    }

    it('alice says "remember my favorite color is teal": heard, transcribed, stored under her UUIDv5, answered aloud; bob at the same time never sees it', async () => {
      const alice = await call(ALICE);
      const bob = await call(BOB);
      // Both are greeted (aloud) before they speak.
      await alice.waitForAgentAudio({ after: 0, timeoutMs: 60_000, quietMs: 800 });
      await bob.waitForAgentAudio({ after: 0, timeoutMs: 60_000, quietMs: 800 });

      const since = stack.model.speech.transcriptions.length;
      const { answer } = await turn(alice, 'remember my favorite color is teal', 'alice-teal.wav');
      expect(answer.audibleSec).toBeGreaterThan(0.2);
      const heard = stack.model.speech.transcriptions.slice(since).find((t) => t.transcript.includes('teal'))!;
      expect(heard.transport).toBe(mode);
      const expected = fixtureSpeechSeconds('alice-teal.wav');
      const measured = speechSeconds(heard);
      expect(
        Math.abs(measured - expected) / expected,
        `heard ${measured} s of speech, the fixture has ${expected} s`,
      ).toBeLessThan(0.2);

      const rows = await transportOf(await stack.memory()).query<{ user_id: string; value: string }>(
        "select user_id, value from public.memories where category = 'PREFERENCE' and key = 'favorite_color'",
      );
      expect(rows).toEqual([{ user_id: identityToUserId(ALICE), value: 'teal' }]);
      expect(stack.model.speech.speeches.some((s) => String(s.input).includes('"teal"'))).toBe(true);
      // Per-turn recall started on her final transcript, before the turn ended, and was used.
      const recalls = stack.workerLog
        .filter((line) => line.includes('memory recalled for the turn'))
        .map((line) => JSON.parse(line) as { prefetched: boolean });
      expect(recalls.length).toBeGreaterThan(0);
      expect(recalls.every((r) => r.prefetched)).toBe(true);

      const { answer: bobHeard } = await turn(bob, 'what is my favorite color', 'bob-question.wav');
      expect(bobHeard.audibleSec).toBeGreaterThan(0.2);
      const bobRequests = stack.model
        .chatRequests()
        .filter((r) => (r.body as { user?: string }).user === identityToUserId(BOB));
      expect(bobRequests.length).toBeGreaterThan(0);
      for (const request of bobRequests) expect(JSON.stringify(request.body)).not.toContain('teal');
      await alice.leave();
      await bob.leave();
    });

    it('alice calls again: greeted as returning with her memory in the first request, and the answer is spoken', async () => {
      const since = stack.model.requests.length;
      const alice = await call(ALICE);
      await alice.waitForAgentAudio({ after: 0, timeoutMs: 60_000, quietMs: 800 });
      const first = stack.model
        .chatRequests()
        .find((r) => r.index >= since && (r.body as { user?: string }).user === identityToUserId(ALICE))!;
      expect(systemText(first)).toContain('returning');
      expect(systemText(first)).toContain('teal');
      const speechesBefore = stack.model.speech.speeches.length;
      const { answer } = await turn(alice, 'what is my favorite color', 'alice-question.wav');
      expect(answer.audibleSec).toBeGreaterThan(0.2);
      expect(stack.model.speech.speeches.slice(speechesBefore).some((s) => String(s.input).includes('teal'))).toBe(
        true,
      );
      const recording = await alice.leave();
      expect(fs.existsSync(recording.file)).toBe(true);
    });
  });
}
