import path from 'node:path';
import {
  AudioFrame,
  AudioSource,
  AudioStream,
  LocalAudioTrack,
  ParticipantKind,
  Room,
  RoomEvent,
  TrackKind,
  TrackPublishOptions,
  TrackSource,
  type LocalTrackPublication,
  type RemoteParticipant,
  type RemoteTrack,
} from '@livekit/rtc-node';
import { createJoinToken, type JoinTokenOptions } from './token.js';
import { readWavFile, requireFormat, wavDurationSec, writeWavFile, type WavAudio } from './wav.js';

/** What the caller sends and records: 48 kHz mono, in 10 ms frames. */
export const SAMPLE_RATE = 48_000;
export const FRAME_MS = 10;
export const SAMPLES_PER_FRAME = (SAMPLE_RATE * FRAME_MS) / 1000;
/**
 * A 10 ms frame is audible when its RMS is above this (int16 units; 300 is about -41 dBFS):
 * well above Opus's decoded silence, well below espeak-ng's quietest voiced frames.
 */
export const DEFAULT_AUDIBLE_RMS = 300;

export type VoiceCallerErrorCode = 'TIMEOUT' | 'BUSY' | 'CLOSED';

export class VoiceCallerError extends Error {
  override name = 'VoiceCallerError';
  constructor(
    readonly code: VoiceCallerErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Milliseconds on the epoch scale, but monotonic (performance.now based). */
export const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function rms(samples: Int16Array, start = 0, end = samples.length): number {
  if (end <= start) return 0;
  let sum = 0;
  for (let i = start; i < end; i++) sum += samples[i]! * samples[i]!;
  return Math.sqrt(sum / (end - start));
}

export interface AudibleSummary {
  /** 10 ms frames measured. */
  frames: number;
  audibleFrames: number;
  audibleSec: number;
  /** Offset of the first and the end of the last audible frame, in seconds from the start; undefined when silent. */
  firstAudibleSec?: number;
  lastAudibleEndSec?: number;
}

/** The RMS rule the caller applies to what it hears, applied to a mono WAV (a fixture, a recording). */
export function measureAudible(audio: WavAudio, threshold = DEFAULT_AUDIBLE_RMS): AudibleSummary {
  if (audio.channels !== 1) throw new Error('measureAudible reads mono audio');
  const frameSize = Math.round((audio.sampleRate * FRAME_MS) / 1000);
  const frames = Math.floor(audio.samples.length / frameSize);
  let audibleFrames = 0;
  let first: number | undefined;
  let last: number | undefined;
  for (let f = 0; f < frames; f++) {
    if (rms(audio.samples, f * frameSize, (f + 1) * frameSize) > threshold) {
      audibleFrames++;
      first ??= f;
      last = f;
    }
  }
  return {
    frames,
    audibleFrames,
    audibleSec: (audibleFrames * FRAME_MS) / 1000,
    firstAudibleSec: first === undefined ? undefined : (first * FRAME_MS) / 1000,
    lastAudibleEndSec: last === undefined ? undefined : ((last + 1) * FRAME_MS) / 1000,
  };
}

export interface VoiceCallerOptions {
  url: string;
  /** A join token, or the options to make one (scripts/lib/token.ts). */
  token: string | JoinTokenOptions;
  /** Where leave() writes the recording of what the caller heard. */
  outDir: string;
  /** Whose audio to listen to: this identity; by default the first agent, else the first participant, publishing audio. */
  listenTo?: string;
  /** RMS above which a 10 ms frame counts as audible (default DEFAULT_AUDIBLE_RMS). */
  audibleRms?: number;
  /** Silence sent after each utterance, in seconds (default 1). */
  trailingSilenceSec?: number;
}

export interface SayResult {
  /** When the first frame was captured (ms, see now()). */
  startedAt: number;
  /** When the last frame of speech (before the trailing silence) was captured. */
  endedAt: number;
  /** The utterance's length without the trailing silence. */
  durationSec: number;
}

export interface AgentAudio {
  firstAudibleAt: number;
  lastAudibleAt: number;
  audibleSec: number;
  /** True when the timeout came before a quiet spell: the remote side was still talking. */
  stillTalking: boolean;
}

export interface HeardLevel {
  /** When the 10 ms frame arrived (ms, see now()). */
  at: number;
  rms: number;
}

export interface Heard {
  /** Whose audio was heard, once a track is subscribed. */
  from?: string;
  frames: number;
  audibleSec: number;
  firstAudibleAt?: number;
  lastAudibleAt?: number;
  levels: readonly HeardLevel[];
}

/** Make a participant identity safe as a file name. */
function fileSafe(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 80) || 'caller';
}

/**
 * A real LiveKit participant (rtc-node) that talks: it publishes a microphone track and plays WAV
 * speech into it in 10 ms frames in real time, and it listens: it subscribes to one remote
 * participant's audio (the agent's), keeps a 10 ms RMS timeline, and writes what it heard to a
 * WAV file when it leaves. For tests, the demo and load generation.
 */
export class VoiceCaller {
  readonly room = new Room();
  readonly #options: VoiceCallerOptions;
  readonly #threshold: number;
  #source!: AudioSource;
  #publication!: LocalTrackPublication;
  #speaking = false;
  #closed = false;
  #from: string | undefined;
  #reader: ReadableStreamDefaultReader<AudioFrame> | undefined;
  #listening: string | undefined;
  #reading: Promise<void> | undefined;
  #pending = new Int16Array(0);
  readonly #levels: HeardLevel[] = [];
  readonly #recorded: Int16Array[] = [];
  #lastChunkAt: number | undefined;
  readonly #errors: Error[] = [];

  private constructor(options: VoiceCallerOptions) {
    this.#options = options;
    this.#threshold = options.audibleRms ?? DEFAULT_AUDIBLE_RMS;
  }

  static async join(options: VoiceCallerOptions): Promise<VoiceCaller> {
    const caller = new VoiceCaller(options);
    const token = typeof options.token === 'string' ? options.token : await createJoinToken(options.token);
    await caller.#connect(token);
    return caller;
  }

  get identity(): string {
    return this.room.localParticipant?.identity ?? '';
  }

  /** The recording leave() writes. */
  get recordingFile(): string {
    return path.join(this.#options.outDir, `${fileSafe(this.identity)}-heard.wav`);
  }

  async #connect(token: string): Promise<void> {
    this.room.on(RoomEvent.TrackSubscribed, (track, _publication, participant) =>
      this.#maybeListen(track, participant),
    );
    // The listened-to track going away (the agent unpublished or left): listen to the next one.
    this.room.on(RoomEvent.TrackUnsubscribed, (track) => {
      if (track.sid === undefined || track.sid !== this.#listening) return;
      const reader = this.#reader;
      this.#reader = undefined;
      this.#listening = undefined;
      this.#pending = new Int16Array(0);
      void reader?.cancel().catch(() => undefined);
      queueMicrotask(() => this.#listenToSubscribed(track.sid));
    });
    await this.room.connect(this.#options.url, token, { autoSubscribe: true, dynacast: false });
    this.#listenToSubscribed();
    // A short native queue: the caller paces frames itself; the queue only absorbs timer jitter.
    this.#source = new AudioSource(SAMPLE_RATE, 1, 200);
    const track = LocalAudioTrack.createAudioTrack('microphone', this.#source);
    const options = new TrackPublishOptions({ source: TrackSource.SOURCE_MICROPHONE });
    this.#publication = await this.room.localParticipant!.publishTrack(track, options);
  }

  /** Pick a track among those already subscribed (after connecting, or when the listened-to track went away). */
  #listenToSubscribed(except?: string): void {
    for (const participant of this.room.remoteParticipants.values()) {
      for (const publication of participant.trackPublications.values()) {
        if (publication.track && publication.sid !== except) this.#maybeListen(publication.track, participant);
      }
    }
  }

  #wants(participant: RemoteParticipant): boolean {
    if (this.#options.listenTo !== undefined) return participant.identity === this.#options.listenTo;
    if (participant.kind === ParticipantKind.AGENT) return true;
    const agents = [...this.room.remoteParticipants.values()].filter((p) => p.kind === ParticipantKind.AGENT);
    return agents.length === 0;
  }

  #maybeListen(track: RemoteTrack, participant: RemoteParticipant): void {
    if (this.#closed || this.#reader || track.kind !== TrackKind.KIND_AUDIO || !this.#wants(participant)) return;
    this.#from = participant.identity;
    this.#listening = track.sid;
    const stream = new AudioStream(track, { sampleRate: SAMPLE_RATE, numChannels: 1 });
    const reader = stream.getReader();
    this.#reader = reader;
    this.#reading = (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        this.#onFrame(value);
      }
    })().catch((error: unknown) => {
      if (!this.#closed) this.#errors.push(error instanceof Error ? error : new Error(String(error)));
    });
  }

  #onFrame(frame: AudioFrame): void {
    const at = now();
    const data = frame.data.subarray(0, frame.samplesPerChannel * frame.channels);
    const joined = new Int16Array(this.#pending.length + data.length);
    joined.set(this.#pending);
    joined.set(data, this.#pending.length);
    let offset = 0;
    for (; offset + SAMPLES_PER_FRAME <= joined.length; offset += SAMPLES_PER_FRAME) {
      const chunk = joined.slice(offset, offset + SAMPLES_PER_FRAME);
      // Keep real time in the recording: a pause in delivery longer than 100 ms becomes silence.
      if (this.#lastChunkAt !== undefined) {
        const gapMs = at - this.#lastChunkAt - FRAME_MS;
        if (gapMs > 100) {
          for (let i = 0; i < Math.round(gapMs / FRAME_MS); i++) this.#recorded.push(new Int16Array(SAMPLES_PER_FRAME));
        }
      }
      this.#lastChunkAt = at;
      this.#recorded.push(chunk);
      this.#levels.push({ at, rms: rms(chunk) });
    }
    this.#pending = joined.slice(offset);
  }

  #check(): void {
    if (this.#errors.length > 0) throw this.#errors[0]!;
  }

  async #until(condition: () => boolean, what: string, timeoutMs: number): Promise<void> {
    const deadline = now() + timeoutMs;
    while (!condition()) {
      this.#check();
      if (this.#closed) throw new VoiceCallerError('CLOSED', `${this.identity}: left while waiting for ${what}`);
      if (now() > deadline) {
        throw new VoiceCallerError('TIMEOUT', `${this.identity}: timed out after ${timeoutMs} ms waiting for ${what}`);
      }
      await sleep(10);
    }
  }

  /** Resolve once some participant has subscribed to this caller's microphone. */
  async waitForListener(timeoutMs = 10_000): Promise<void> {
    let subscribed = false;
    void this.#publication.waitForSubscription().then(() => (subscribed = true));
    await this.#until(() => subscribed, 'a subscriber to the microphone', timeoutMs);
  }

  /** Resolve once audio frames from the remote participant arrive (audible or not). */
  async waitForRemoteAudio(timeoutMs = 10_000): Promise<void> {
    await this.#until(() => this.#levels.length > 0, 'audio from the remote participant', timeoutMs);
  }

  /**
   * Play a WAV file (48 kHz mono 16-bit PCM) or audio into the microphone track, one 10 ms frame
   * every 10 ms by the clock, then the trailing silence. Resolves when the last frame is captured.
   */
  async say(audio: string | WavAudio, options: { trailingSilenceSec?: number } = {}): Promise<SayResult> {
    if (this.#closed) throw new VoiceCallerError('CLOSED', `${this.identity} has left`);
    if (this.#speaking) throw new VoiceCallerError('BUSY', `${this.identity} is already speaking`);
    const what = typeof audio === 'string' ? audio : 'the audio';
    const wav = requireFormat(typeof audio === 'string' ? await readWavFile(audio) : audio, SAMPLE_RATE, 1, what);
    const trailing = options.trailingSilenceSec ?? this.#options.trailingSilenceSec ?? 1;
    const speechFrames = Math.ceil(wav.samples.length / SAMPLES_PER_FRAME);
    const totalFrames = speechFrames + Math.round((trailing * 1000) / FRAME_MS);
    this.#speaking = true;
    try {
      let startedAt = 0;
      let endedAt = 0;
      for (let i = 0; i < totalFrames; i++) {
        if (this.#closed) throw new VoiceCallerError('CLOSED', `${this.identity} left while speaking`);
        const data = new Int16Array(SAMPLES_PER_FRAME);
        if (i < speechFrames) data.set(wav.samples.subarray(i * SAMPLES_PER_FRAME, (i + 1) * SAMPLES_PER_FRAME));
        if (i > 0) {
          const wait = startedAt + i * FRAME_MS - now();
          if (wait > 1) await sleep(wait);
        }
        await this.#source.captureFrame(new AudioFrame(data, SAMPLE_RATE, 1, SAMPLES_PER_FRAME));
        if (i === 0) startedAt = now();
        if (i === speechFrames - 1) endedAt = now();
      }
      if (speechFrames === 0) endedAt = startedAt;
      return { startedAt, endedAt, durationSec: wavDurationSec(wav) };
    } finally {
      this.#speaking = false;
    }
  }

  #summary(after: number): Omit<Heard, 'levels' | 'from'> & { levels: HeardLevel[] } {
    const levels = this.#levels.filter((l) => l.at >= after);
    const audible = levels.filter((l) => l.rms > this.#threshold);
    return {
      frames: levels.length,
      audibleSec: (audible.length * FRAME_MS) / 1000,
      firstAudibleAt: audible[0]?.at,
      lastAudibleAt: audible.at(-1)?.at,
      levels,
    };
  }

  /**
   * Wait for the remote participant to speak after `after` (default: now) and then to be quiet
   * for `quietMs`. Throws TIMEOUT when nothing audible arrives in time; returns with
   * stillTalking when it is still speaking at the timeout.
   */
  async waitForAgentAudio(options: { after?: number; timeoutMs?: number; quietMs?: number } = {}): Promise<AgentAudio> {
    const after = options.after ?? now();
    const timeoutMs = options.timeoutMs ?? 30_000;
    const quietMs = options.quietMs ?? 700;
    const deadline = now() + timeoutMs;
    for (;;) {
      this.#check();
      const summary = this.#summary(after);
      const t = now();
      if (summary.firstAudibleAt !== undefined) {
        const quiet = t - summary.lastAudibleAt! >= quietMs;
        if (quiet || t > deadline) {
          return {
            firstAudibleAt: summary.firstAudibleAt,
            lastAudibleAt: summary.lastAudibleAt!,
            audibleSec: summary.audibleSec,
            stillTalking: !quiet,
          };
        }
      } else if (t > deadline) {
        throw new VoiceCallerError(
          'TIMEOUT',
          `${this.identity}: nothing audible from ${this.#from ?? 'the remote participant (no audio track yet)'} within ${timeoutMs} ms (${summary.frames} frames heard)`,
        );
      }
      if (this.#closed) throw new VoiceCallerError('CLOSED', `${this.identity} has left`);
      await sleep(20);
    }
  }

  /** The timeline of what the caller heard, from `after` (default: everything). */
  heard(after = 0): Heard {
    return { from: this.#from, ...this.#summary(after) };
  }

  /** Leave the room and write the recording; returns its path and length. */
  async leave(): Promise<{ file: string; durationSec: number }> {
    const file = this.recordingFile;
    if (!this.#closed) {
      this.#closed = true;
      await this.#reader?.cancel().catch(() => undefined);
      await this.#reading;
      await this.room.disconnect();
      await this.#source?.close();
    }
    const samples = new Int16Array(this.#recorded.length * SAMPLES_PER_FRAME);
    this.#recorded.forEach((chunk, i) => samples.set(chunk, i * SAMPLES_PER_FRAME));
    const audio: WavAudio = { sampleRate: SAMPLE_RATE, channels: 1, samples };
    await writeWavFile(file, audio);
    return { file, durationSec: wavDurationSec(audio) };
  }
}
