import '../support/quiet-rtc.js';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLivekitServerOnFreePorts } from '../../scripts/livekit/free-ports-server.js';
import type { LivekitServerHandle } from '../../scripts/livekit/server.js';
import { measureAudible, now, SAMPLE_RATE, VoiceCaller } from '../../scripts/lib/voice-caller.js';
import { readWavFile, wavDurationSec, type WavAudio } from '../../scripts/lib/wav.js';

const ALICE = 'test/fixtures/audio/alice-teal.wav';
const BOB = 'test/fixtures/audio/bob-question.wav';

/**
 * Two real rtc-node participants in one room on a real livekit-server: speech played into one
 * microphone track arrives, audible, at the other. The time bounds are correctness bounds (audio
 * flows at all, in about real time), not performance figures.
 */
describe('VoiceCaller on a real livekit-server', () => {
  let server: LivekitServerHandle;
  let outDir: string;
  let caller: VoiceCaller;
  let agent: VoiceCaller;
  const room = `voice-${process.pid}-${Date.now()}`;

  beforeAll(async () => {
    server = await startLivekitServerOnFreePorts();
    outDir = await mkdtemp(path.join(os.tmpdir(), 'voice-caller-'));
    const join = (identity: string, listenTo: string) =>
      VoiceCaller.join({
        url: server.url,
        token: { apiKey: server.apiKey, apiSecret: server.apiSecret, identity, room },
        outDir,
        listenTo,
      });
    caller = await join('caller', 'agent');
    agent = await join('agent', 'caller');
    await Promise.all([caller.waitForListener(), agent.waitForListener()]);
  }, 60_000);

  afterAll(async () => {
    await Promise.allSettled([caller?.leave(), agent?.leave()]);
    await server?.stop();
    // KEEP_VOICE_RECORDINGS=1 keeps the recordings to listen to.
    if (process.env.KEEP_VOICE_RECORDINGS === '1') process.stdout.write(`[voice] recordings in ${outDir}\n`);
    else if (outDir) await rm(outDir, { recursive: true, force: true });
  });

  async function expectHeard(speaker: VoiceCaller, listener: VoiceCaller, fixture: string) {
    const expected = measureAudible(await readWavFile(fixture));
    const said = await speaker.say(fixture);
    const heard = await listener.waitForAgentAudio({ after: said.startedAt, timeoutMs: 10_000, quietMs: 500 });
    expect(said.durationSec).toBeCloseTo(wavDurationSec(await readWavFile(fixture)), 2);
    // Real time: the speech took about its own length to play (the timer may run late, never early).
    expect((said.endedAt - said.startedAt) / 1000).toBeGreaterThan(said.durationSec - 0.05);
    expect((said.endedAt - said.startedAt) / 1000).toBeLessThan(said.durationSec + 1);
    expect(heard.stillTalking).toBe(false);
    expect(heard.firstAudibleAt - said.startedAt).toBeLessThan(1000);
    expect(heard.audibleSec).toBeGreaterThan(expected.audibleSec * 0.8);
    expect(heard.audibleSec).toBeLessThan(expected.audibleSec * 1.2);
    return { said, heard, expected };
  }

  it('carries speech from the caller to the agent in real time', async () => {
    const { said, heard, expected } = await expectHeard(caller, agent, ALICE);
    process.stdout.write(
      `[voice] alice-teal: ${said.durationSec.toFixed(2)} s, audible ${expected.audibleSec.toFixed(2)} s; heard ${heard.audibleSec.toFixed(2)} s audible, first after ${(heard.firstAudibleAt - said.startedAt).toFixed(0)} ms\n`,
    );
    expect(agent.heard().from).toBe('caller');
  });

  it('carries speech from the agent back to the caller', async () => {
    const { said, heard, expected } = await expectHeard(agent, caller, BOB);
    process.stdout.write(
      `[voice] bob-question: ${said.durationSec.toFixed(2)} s, audible ${expected.audibleSec.toFixed(2)} s; heard ${heard.audibleSec.toFixed(2)} s audible, first after ${(heard.firstAudibleAt - said.startedAt).toFixed(0)} ms\n`,
    );
    expect(caller.heard().from).toBe('agent');
  });

  it('hears nothing audible while the other side sends 2 s of silence', async () => {
    const silence: WavAudio = { sampleRate: SAMPLE_RATE, channels: 1, samples: new Int16Array(2 * SAMPLE_RATE) };
    const said = await caller.say(silence, { trailingSilenceSec: 0.2 });
    expect(said.durationSec).toBe(2);
    const during = agent.heard(said.startedAt);
    expect(during.frames).toBeGreaterThan(0);
    expect(during.audibleSec).toBe(0);
    expect(during.firstAudibleAt).toBeUndefined();
    await expect(agent.waitForAgentAudio({ after: said.startedAt, timeoutMs: 300 })).rejects.toMatchObject({
      code: 'TIMEOUT',
    });
  });

  it('refuses audio that is not 48 kHz mono with a clear error', async () => {
    const wrong: WavAudio = { sampleRate: 16_000, channels: 1, samples: new Int16Array(160) };
    await expect(caller.say(wrong)).rejects.toMatchObject({ code: 'WRONG_FORMAT', message: /sox in\.wav -r 48000/ });
  });

  it('listens again when the speaker leaves and comes back', async () => {
    const otherRoom = `${room}-again`;
    const join = (identity: string, listenTo: string) =>
      VoiceCaller.join({
        url: server.url,
        token: { apiKey: server.apiKey, apiSecret: server.apiSecret, identity, room: otherRoom },
        outDir,
        listenTo,
      });
    const listener = await join('listener', 'speaker');
    try {
      for (const fixture of [BOB, 'test/fixtures/audio/interrupt.wav']) {
        const speaker = await join('speaker', 'listener');
        try {
          await speaker.waitForListener();
          const said = await speaker.say(fixture, { trailingSilenceSec: 0.3 });
          const heard = await listener.waitForAgentAudio({ after: said.startedAt, timeoutMs: 10_000, quietMs: 300 });
          const expected = measureAudible(await readWavFile(fixture));
          expect(heard.audibleSec).toBeGreaterThan(expected.audibleSec * 0.8);
          expect(heard.audibleSec).toBeLessThan(expected.audibleSec * 1.2);
        } finally {
          await speaker.leave();
        }
      }
    } finally {
      await listener.leave();
    }
  });

  it('writes what each side heard to a WAV file of the listening time', async () => {
    const heardBefore = { caller: caller.heard(), agent: agent.heard() };
    const leftAt = now();
    const [fromCaller, fromAgent] = [await caller.leave(), await agent.leave()];
    for (const [result, timeline, fixture] of [
      [fromCaller, heardBefore.caller, BOB],
      [fromAgent, heardBefore.agent, ALICE],
    ] as const) {
      const wav = await readWavFile(result.file);
      expect(wav.sampleRate).toBe(SAMPLE_RATE);
      expect(wav.channels).toBe(1);
      expect(wavDurationSec(wav)).toBeCloseTo(result.durationSec, 3);
      // The recording spans the listening time: from the first frame heard until leaving.
      const listenedSec = (leftAt - timeline.levels[0]!.at) / 1000;
      expect(wavDurationSec(wav)).toBeGreaterThan(listenedSec - 0.5);
      expect(wavDurationSec(wav)).toBeLessThan(listenedSec + 1);
      // And it holds the speech, audible for about as long as the fixture.
      const expected = measureAudible(await readWavFile(fixture));
      const recorded = measureAudible(wav);
      expect(recorded.audibleSec).toBeGreaterThan(expected.audibleSec * 0.8);
      expect(recorded.audibleSec).toBeLessThan(expected.audibleSec * 1.2);
    }
  });
});
