import '../support/quiet-rtc.js';
import { initializeLogger, stt } from '@livekit/agents';
import * as lkOpenAI from '@livekit/agents-plugin-openai';
import { AudioFrame } from '@livekit/rtc-node';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { concatPcm, decodeWav, encodeWav, noise, pcmFromBytes, rms, silence, voicedSignal } from '../support/audio.js';
import { ScriptedOpenAI } from '../support/openai-standin.js';
import { seededRandom } from '../support/random.js';
import { SPEECH_SAMPLE_RATE } from '../support/speech-standin.js';

// The speech stand-in is checked with the real clients (LiveKit's openai.STT and openai.TTS, and
// the openai SDK), never with a parser of our own: what matters is that they accept what it sends.

const standin = new ScriptedOpenAI();
let client: OpenAI;

const INPUT_RATE = 48_000;
const FRAME_SAMPLES = INPUT_RATE / 100; // 10 ms frames, as a LiveKit room delivers them

beforeAll(async () => {
  initializeLogger({ pretty: false, level: 'warn' });
  await standin.start();
  client = new OpenAI({ baseURL: standin.baseURL, apiKey: 'x', maxRetries: 0 });
});

afterAll(async () => {
  await standin.stop();
});

beforeEach(() => {
  standin.clear();
});

function frames(samples: Int16Array, sampleRate = INPUT_RATE, perFrame = FRAME_SAMPLES): AudioFrame[] {
  const out: AudioFrame[] = [];
  for (let offset = 0; offset < samples.length; offset += perFrame) {
    const chunk = samples.slice(offset, offset + perFrame);
    out.push(new AudioFrame(chunk, sampleRate, 1, chunk.length));
  }
  return out;
}

function realtimeSTT(): lkOpenAI.STT {
  return new lkOpenAI.STT({ baseURL: standin.baseURL, apiKey: 'x', model: 'gpt-4o-mini-transcribe' });
}

/** Runs a realtime STT stream over `audio`, collecting its events until `done` or `timeoutMs`. */
async function transcribeRealtime(
  audio: Int16Array,
  done: (events: stt.SpeechEvent[]) => boolean,
  timeoutMs: number,
): Promise<stt.SpeechEvent[]> {
  const openaiStt = realtimeSTT();
  const stream = openaiStt.stream();
  const events: stt.SpeechEvent[] = [];
  let finished!: () => void;
  const finishedPromise = new Promise<void>((resolve) => (finished = resolve));
  const collecting = (async () => {
    for await (const event of stream) {
      events.push(event);
      if (done(events)) break;
    }
    finished();
  })();
  for (const frame of frames(audio)) stream.pushFrame(frame);
  const timer = setTimeout(finished, timeoutMs);
  await finishedPromise;
  clearTimeout(timer);
  stream.close();
  await openaiStt.close();
  await collecting.catch(() => {});
  return events;
}

const isFinal = (event: stt.SpeechEvent) => event.type === stt.SpeechEventType.FINAL_TRANSCRIPT;

describe('realtime transcription with openai.STT (agents-js)', () => {
  it('detects an utterance by level and answers with the queued transcript', async () => {
    standin.queueTranscript('remember my favorite color is teal');
    const audio = concatPcm(voicedSignal(1.2, INPUT_RATE), silence(1, INPUT_RATE));
    const events = await transcribeRealtime(audio, (all) => all.some(isFinal), 15_000);

    const types = events.map((event) => event.type);
    expect(types).toContain(stt.SpeechEventType.START_OF_SPEECH);
    expect(types).toContain(stt.SpeechEventType.END_OF_SPEECH);
    const final = events.find(isFinal);
    expect(final?.alternatives?.[0]?.text).toBe('remember my favorite color is teal');
    // Interim transcripts come from the deltas, and build up to the final text.
    const interims = events.filter((event) => event.type === stt.SpeechEventType.INTERIM_TRANSCRIPT);
    expect(interims.length).toBeGreaterThan(1);
    expect(interims.at(-1)?.alternatives?.[0]?.text).toBe('remember my favorite color is teal');

    const [record] = standin.speech.transcriptions;
    expect(standin.speech.transcriptions).toHaveLength(1);
    expect(record?.transport).toBe('realtime');
    expect(record?.unscripted).toBe(false);
    expect(record?.model).toBe('gpt-4o-mini-transcribe');
    // The plugin resamples to 24 kHz PCM16 before sending.
    expect(record?.sampleRate).toBe(24_000);
    // "Duration" is the speech segment only: no hang-over silence, no leading audio.
    expect(record?.durationSeconds).toBeGreaterThan(1.2 * 0.8);
    expect(record?.durationSeconds).toBeLessThan(1.2 * 1.2);
    expect(record?.audio.length).toBe(Math.round((record?.durationSeconds ?? 0) * 24_000) * 2);
    expect(record?.rms).toBeGreaterThan(0.05);

    const [session] = standin.speech.realtimeSessions;
    expect(session?.query.intent).toBe('transcription');
    expect(session?.headers.authorization).toBe('Bearer x');
    const update = session?.clientEvents.find((event) => event.type === 'session.update');
    expect(update).toMatchObject({
      session: {
        type: 'transcription',
        audio: { input: { format: { type: 'audio/pcm', rate: 24_000 }, turn_detection: { type: 'server_vad' } } },
      },
    });
    expect(session?.serverEvents.map((event) => event.type)).toEqual(
      expect.arrayContaining([
        'session.created',
        'session.updated',
        'input_audio_buffer.speech_started',
        'input_audio_buffer.speech_stopped',
        'input_audio_buffer.committed',
        'conversation.item.input_audio_transcription.delta',
        'conversation.item.input_audio_transcription.completed',
      ]),
    );
  });

  it('answers two utterances with two transcripts, in order', async () => {
    standin.speech.queueTranscript('first thing', 'second thing');
    const audio = concatPcm(
      voicedSignal(0.8, INPUT_RATE),
      silence(1, INPUT_RATE),
      voicedSignal(0.5, INPUT_RATE, { f0: 210 }),
      silence(1, INPUT_RATE),
    );
    const events = await transcribeRealtime(audio, (all) => all.filter(isFinal).length >= 2, 15_000);
    expect(events.filter(isFinal).map((event) => event.alternatives?.[0]?.text)).toEqual([
      'first thing',
      'second thing',
    ]);
    const durations = standin.speech.transcriptions.map((record) => record.durationSeconds);
    expect(durations[0]).toBeGreaterThan(0.8 * 0.8);
    expect(durations[0]).toBeLessThan(0.8 * 1.2);
    expect(durations[1]).toBeGreaterThan(0.5 * 0.8);
    expect(durations[1]).toBeLessThan(0.5 * 1.2);
    expect(standin.speech.pendingTranscripts).toEqual([]);
  });

  it('with turn detection off, answers when the client commits (flush), without speech events', async () => {
    standin.speech.queueTranscript('committed by the client');
    // turnDetection null and no VAD: the plugin commits the buffer on flush().
    const openaiStt = new lkOpenAI.STT({
      baseURL: standin.baseURL,
      apiKey: 'x',
      model: 'gpt-4o-mini-transcribe',
      turnDetection: null,
      vad: null,
    });
    const stream = openaiStt.stream();
    const events: stt.SpeechEvent[] = [];
    const gotFinal = (async () => {
      for await (const event of stream) {
        events.push(event);
        if (isFinal(event)) return;
      }
    })();
    for (const frame of frames(concatPcm(voicedSignal(1, INPUT_RATE), silence(0.2, INPUT_RATE)))) {
      stream.pushFrame(frame);
    }
    stream.flush();
    await Promise.race([gotFinal, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    stream.close();
    await openaiStt.close();
    expect(events.find(isFinal)?.alternatives?.[0]?.text).toBe('committed by the client');
    expect(events.map((event) => event.type)).not.toContain(stt.SpeechEventType.START_OF_SPEECH);
    const session = standin.speech.realtimeSessions[0];
    expect(session?.clientEvents.map((event) => event.type)).toContain('input_audio_buffer.commit');
    expect(session?.serverEvents.map((event) => event.type)).not.toContain('input_audio_buffer.speech_started');
    expect(standin.speech.transcriptions[0]?.durationSeconds).toBeGreaterThan(0.8);
    expect(standin.speech.transcriptions[0]?.durationSeconds).toBeLessThan(1.2);
  });

  it.each([
    ['3 s of digital silence', () => silence(3, INPUT_RATE)],
    ['3 s of low noise below the threshold', () => noise(3, INPUT_RATE, 0.005, seededRandom(7))],
  ])('sends no speech or transcript events for %s', async (_name, make) => {
    standin.speech.queueTranscript('must not be used');
    const audio = make();
    const openaiStt = realtimeSTT();
    const stream = openaiStt.stream();
    const events: stt.SpeechEvent[] = [];
    const collecting = (async () => {
      for await (const event of stream) events.push(event);
    })();
    for (const frame of frames(audio)) stream.pushFrame(frame);
    // Wait until the stand-in has all of it (less the resampler's tail), then a little longer.
    const deadline = Date.now() + 10_000;
    while ((standin.speech.realtimeSessions[0]?.receivedSeconds ?? 0) < 2.9 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(standin.speech.realtimeSessions[0]?.receivedSeconds).toBeGreaterThanOrEqual(2.9);
    await new Promise((resolve) => setTimeout(resolve, 300));
    stream.close();
    await openaiStt.close();
    await collecting.catch(() => {});

    expect(events.filter((event) => event.type !== stt.SpeechEventType.RECOGNITION_USAGE)).toEqual([]);
    expect(standin.speech.transcriptions).toEqual([]);
    expect(standin.speech.pendingTranscripts).toEqual(['must not be used']);
    const sent = standin.speech.realtimeSessions[0]?.serverEvents.map((event) => event.type);
    expect(sent).toEqual(['session.created', 'session.updated']);
  });
});

describe('POST /v1/audio/transcriptions', () => {
  it('answers the openai SDK with the queued transcript and records the upload', async () => {
    standin.speech.queueTranscript('what is my favorite color');
    const samples = concatPcm(silence(0.2, 16_000), voicedSignal(1.5, 16_000), silence(0.3, 16_000));
    const file = await toFile(encodeWav(samples, 16_000), 'question.wav', { type: 'audio/wav' });
    const result = await client.audio.transcriptions.create({ file, model: 'gpt-4o-mini-transcribe' });
    expect(result.text).toBe('what is my favorite color');

    const [record] = standin.speech.transcriptions;
    expect(record).toMatchObject({
      transport: 'http',
      model: 'gpt-4o-mini-transcribe',
      sampleRate: 16_000,
      channels: 1,
      filename: 'question.wav',
      transcript: 'what is my favorite color',
      unscripted: false,
    });
    // Over HTTP the duration is the whole file's.
    expect(record?.durationSeconds).toBeCloseTo(2.0, 3);
    expect(record?.audio.equals(Buffer.from(samples.buffer))).toBe(true);
    expect(record?.rms).toBeCloseTo(rms(samples), 6);
    expect(standin.chatRequests()).toEqual([]);
    expect(standin.requests.at(-1)).toMatchObject({ path: '/v1/audio/transcriptions', status: 200 });
  });

  it('serves the response formats text and verbose_json, and a stereo file as mono', async () => {
    standin.speech.queueTranscript('plain text', 'verbose');
    const mono = voicedSignal(1, 24_000);
    const stereo = new Int16Array(mono.length * 2);
    mono.forEach((sample, i) => {
      stereo[2 * i] = sample;
      stereo[2 * i + 1] = sample;
    });
    const file = () => toFile(encodeWav(stereo, 24_000, 2), 'stereo.wav', { type: 'audio/wav' });
    const text = await client.audio.transcriptions.create({
      file: await file(),
      model: 'whisper-1',
      response_format: 'text',
    });
    expect(text.trim()).toBe('plain text');
    const verbose = await client.audio.transcriptions.create({
      file: await file(),
      model: 'whisper-1',
      response_format: 'verbose_json',
    });
    expect(verbose.text).toBe('verbose');
    expect(verbose.duration).toBeCloseTo(1, 3);
    expect(standin.speech.transcriptions.map((record) => [record.channels, record.durationSeconds])).toEqual([
      [2, 1],
      [2, 1],
    ]);
  });

  it("answers agents-js's non-realtime openai.STT (recognize)", async () => {
    standin.speech.queueTranscript('batch transcript');
    const openaiStt = new lkOpenAI.STT({
      baseURL: standin.baseURL,
      apiKey: 'x',
      model: 'whisper-1',
      useRealtime: false,
    });
    const event = await openaiStt.recognize(frames(voicedSignal(0.7, INPUT_RATE)));
    expect(event.type).toBe(stt.SpeechEventType.FINAL_TRANSCRIPT);
    expect(event.alternatives?.[0]?.text).toBe('batch transcript');
    const [record] = standin.speech.transcriptions;
    expect(record?.sampleRate).toBe(INPUT_RATE);
    expect(record?.durationSeconds).toBeCloseTo(0.7, 2);
  });

  it('rejects a file that is not 16-bit PCM WAV with a 400, and records nothing', async () => {
    standin.speech.queueTranscript('unused');
    const file = await toFile(Buffer.from('ID3 not really an mp3'), 'song.mp3', { type: 'audio/mpeg' });
    await expect(client.audio.transcriptions.create({ file, model: 'whisper-1' })).rejects.toMatchObject({
      status: 400,
    });
    expect(standin.speech.transcriptions).toEqual([]);
    expect(standin.speech.pendingTranscripts).toEqual(['unused']);
  });

  it('answers an empty transcript when none is queued, and says so', async () => {
    const file = await toFile(encodeWav(voicedSignal(0.5, 24_000), 24_000), 'a.wav');
    const result = await client.audio.transcriptions.create({ file, model: 'whisper-1' });
    expect(result.text).toBe('');
    expect(standin.speech.transcriptions[0]?.unscripted).toBe(true);
  });
});

describe('POST /v1/audio/speech', () => {
  async function synthesize(text: string): Promise<Int16Array> {
    const tts = new lkOpenAI.TTS({ baseURL: standin.baseURL, apiKey: 'x', voice: 'ash' });
    const parts: Int16Array[] = [];
    for await (const audio of tts.synthesize(text)) {
      expect(audio.frame.sampleRate).toBe(SPEECH_SAMPLE_RATE);
      expect(audio.frame.channels).toBe(1);
      parts.push(audio.frame.data.slice());
    }
    await tts.close();
    return concatPcm(...parts);
  }

  it("gives agents-js's openai.TTS voiced PCM whose length follows the text", async () => {
    const short = 'Noted, teal.';
    const long = 'I will remember that your favorite color is teal, and that you like it a lot.';
    const shortAudio = await synthesize(short);
    const longAudio = await synthesize(long);

    expect(rms(shortAudio)).toBeGreaterThan(0.05);
    expect(rms(longAudio)).toBeGreaterThan(0.05);
    const shortSeconds = shortAudio.length / SPEECH_SAMPLE_RATE;
    const longSeconds = longAudio.length / SPEECH_SAMPLE_RATE;
    expect(shortSeconds).toBeCloseTo(short.length * 0.06, 1);
    expect(longSeconds).toBeCloseTo(long.length * 0.06, 1);
    expect(longSeconds / shortSeconds).toBeCloseTo(long.length / short.length, 0);

    expect(standin.speech.speeches.map((record) => [record.input, record.voice, record.format, record.status])).toEqual(
      [
        [short, 'ash', 'pcm', 200],
        [long, 'ash', 'pcm', 200],
      ],
    );
    // The plugin cuts the answer into 100 ms frames (AudioByteStream, never flushed) and so drops
    // the last partial frame: the agent hears the sent audio up to a whole 100 ms.
    const [first] = standin.speech.speeches;
    const frame = SPEECH_SAMPLE_RATE / 10;
    expect(shortAudio.length).toBe(Math.floor((first?.audio.length ?? 0) / 2 / frame) * frame);
    expect(
      Buffer.from(shortAudio.buffer).equals(first?.audio.subarray(0, shortAudio.length * 2) ?? Buffer.alloc(0)),
    ).toBe(true);
    expect(first?.durationSeconds).toBeCloseTo(short.length * 0.06, 3);
    expect(first?.rms).toBeCloseTo(rms(pcmFromBytes(first?.audio ?? Buffer.alloc(0))), 6);
  });

  it('answers the openai SDK with a valid WAV file when asked for wav', async () => {
    const input = 'Your favorite color is teal.';
    const response = await client.audio.speech.create({
      model: 'tts-1',
      voice: 'alloy',
      input,
      response_format: 'wav',
    });
    expect(response.headers.get('content-type')).toBe('audio/wav');
    const bytes = Buffer.from(await response.arrayBuffer());
    expect(bytes.toString('ascii', 0, 4)).toBe('RIFF');
    expect(bytes.readUInt32LE(4)).toBe(bytes.length - 8);
    expect(bytes.toString('ascii', 8, 16)).toBe('WAVEfmt ');
    expect(bytes.readUInt16LE(20)).toBe(1); // PCM
    expect(bytes.readUInt16LE(22)).toBe(1); // mono
    expect(bytes.readUInt32LE(24)).toBe(24_000);
    expect(bytes.readUInt16LE(34)).toBe(16);
    expect(bytes.toString('ascii', 36, 40)).toBe('data');
    expect(bytes.readUInt32LE(40)).toBe(bytes.length - 44);
    const wav = decodeWav(bytes);
    expect(wav.samples.length / wav.sampleRate).toBeCloseTo(input.length * 0.06, 2);
    expect(rms(wav.samples)).toBeGreaterThan(0.05);
    expect(standin.speech.speeches[0]).toMatchObject({ input, voice: 'alloy', format: 'wav', model: 'tts-1' });
  });

  it('caps the duration, honours speed, and rejects formats it cannot make', async () => {
    const capped = await client.audio.speech.create({
      model: 'tts-1',
      voice: 'alloy',
      input: 'x'.repeat(4000),
      response_format: 'pcm',
    });
    expect(pcmFromBytes(new Uint8Array(await capped.arrayBuffer())).length / 24_000).toBeCloseTo(15, 3);
    const fast = await client.audio.speech.create({
      model: 'tts-1',
      voice: 'alloy',
      input: 'x'.repeat(50),
      response_format: 'pcm',
      speed: 2,
    });
    expect(pcmFromBytes(new Uint8Array(await fast.arrayBuffer())).length / 24_000).toBeCloseTo(1.5, 3);
    await expect(
      client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'hello', response_format: 'mp3' }),
    ).rejects.toMatchObject({ status: 400 });
    expect(standin.speech.speeches.map((record) => record.status)).toEqual([200, 200, 400]);
  });
});
