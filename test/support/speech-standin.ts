/**
 * TEST STAND-IN FOR A PAID CLOUD API. NOT A MODEL: it recognizes nothing and says nothing.
 *
 * The speech half of the scripted OpenAI stand-in (`ScriptedOpenAI` in `openai-standin.ts` serves
 * these routes on the same port, through its `speech` property). It speaks just enough of OpenAI's
 * speech APIs for `@livekit/agents-plugin-openai` 1.9 (`openai.STT`, `openai.TTS`) and the `openai`
 * SDK:
 *
 * - `GET /v1/realtime?intent=transcription` (websocket), what `openai.STT` always opens. The plugin
 *   sends `session.update` (`session.type: 'transcription'`, `audio.input.format: { type:
 *   'audio/pcm', rate: 24000 }`, `audio.input.turn_detection: { type: 'server_vad', ...,
 *   silence_duration_ms: 350 }` for non-realtime-only models), then `input_audio_buffer.append`
 *   with base64 s16le mono PCM at 24 kHz in 50 ms pieces (it resamples the frames it is given), and
 *   `input_audio_buffer.commit` only when it runs its own VAD (turn detection off). It turns
 *   `input_audio_buffer.speech_started` / `speech_stopped` into START/END_OF_SPEECH,
 *   `conversation.item.input_audio_transcription.delta` into INTERIM_TRANSCRIPT,
 *   `...completed` (non-empty `transcript`) into FINAL_TRANSCRIPT plus RECOGNITION_USAGE, and
 *   `error` into a thrown error. Everything else it ignores.
 *   Speech is found by level: 10 ms windows whose RMS is at least `speechThreshold` are voiced;
 *   three voiced windows in a row start an utterance, and `hangoverMs` of unvoiced audio after the
 *   last voiced window (the client's `silence_duration_ms` when it sends one) ends it. The
 *   utterance is answered with the next queued transcript (`queueTranscript`).
 *   The "speech segment" is from the start of the first voiced window to the end of the last
 *   voiced window: the hang-over silence is not part of it, and neither is audio before it.
 *   With `turn_detection: null` no speech events are sent and the segment (from the first voiced
 *   window since the last commit to the last one) is answered when the client commits.
 * - `POST /v1/audio/transcriptions` (multipart: `file`, `model`, ...): 16-bit PCM WAV only, the
 *   whole file is "the audio"; answers the next queued transcript (`json`, `text`, `verbose_json`).
 * - `POST /v1/audio/speech` (`model`, `input`, `voice`, `response_format`, `speed`): real audio, a
 *   voiced synthetic signal (see `voicedSignal`) of `msPerCharacter` per character of `input`
 *   (divided by `speed`, within [`minSpeechSeconds`, `maxSpeechSeconds`]), 24 kHz mono, as `pcm`
 *   (raw s16le, what `openai.TTS` asks for) or `wav`. Other formats get a 400.
 *
 * With no transcript queued, the `transcriber` (when set) picks one from the utterance (its
 * duration, level, websocket): the way to serve concurrent callers, since the queue is one list
 * for the whole server and no STT request names its room (`scripts/load.ts` picks by duration).
 * With neither, an utterance is answered with an empty transcript (the plugin then emits no
 * FINAL_TRANSCRIPT) and its record says `unscripted: true`.
 *
 * Every transcription (websocket utterance or HTTP upload) and every speech request is recorded.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import { bytesFromPcm, concatPcm, decodeWav, encodeWav, pcmFromBytes, rms, voicedSignal } from './audio.js';

export interface SpeechStandinOptions {
  /** RMS (fraction of full scale) from which a 10 ms window counts as voiced. Default 0.02 (-34 dBFS). */
  speechThreshold?: number;
  /** Unvoiced audio that ends an utterance when the client sends no `silence_duration_ms`. Default 500. */
  hangoverMs?: number;
  /** Synthesized speech per character of input. Default 60. */
  msPerCharacter?: number;
  /** Bounds on the synthesized duration. Defaults 0.3 and 15. */
  minSpeechSeconds?: number;
  maxSpeechSeconds?: number;
}

/** The sample rate of everything this stand-in synthesizes, and of the realtime API's `pcm16`. */
export const SPEECH_SAMPLE_RATE = 24_000;

const WINDOW_MS = 10;
const START_WINDOWS = 3;

export interface TranscriptionRecord {
  /** Position in `transcriptions` (since the last `clear()`). */
  index: number;
  at: Date;
  transport: 'realtime' | 'http';
  model: string | undefined;
  /** The audio this transcript is for, s16le mono: the speech segment (realtime) or the whole file (HTTP). */
  audio: Buffer;
  sampleRate: number;
  /** Duration of `audio` in seconds. */
  durationSeconds: number;
  /** RMS of `audio`, as a fraction of full scale. */
  rms: number;
  /** The transcript answered ('' when nothing was queued). */
  transcript: string;
  /** True when no transcript was queued for this one. */
  unscripted: boolean;
  /** Realtime: the `item_id` of the events; index into `realtimeSessions`. */
  itemId?: string;
  sessionIndex?: number;
  /** HTTP: the uploaded file's name and type, the channel count of the WAV, the form fields. */
  filename?: string;
  contentType?: string;
  channels?: number;
  fields?: Record<string, string>;
}

export interface SpeechRecord {
  index: number;
  at: Date;
  model: unknown;
  input: unknown;
  voice: unknown;
  /** `response_format` as sent (undefined when absent; the API's default is `mp3`). */
  format: unknown;
  speed: unknown;
  instructions: unknown;
  status: number;
  error?: string;
  /** The response body sent (empty on error). */
  audio: Buffer;
  sampleRate: number;
  durationSeconds: number;
  rms: number;
}

export interface RealtimeSessionRecord {
  index: number;
  at: Date;
  /** Path and query as requested, e.g. `/v1/realtime?intent=transcription&model=...`. */
  url: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  /** Client events in order; `input_audio_buffer.append` keeps `bytes` instead of its `audio`. */
  clientEvents: Array<Record<string, unknown>>;
  /** Server events sent, in order. */
  serverEvents: Array<Record<string, unknown>>;
  /** The last `session` object the client sent in an update. */
  session: Record<string, unknown> | undefined;
  /** Total audio received, in bytes and seconds. */
  receivedBytes: number;
  receivedSeconds: number;
  closed: boolean;
}

interface Waiter<T> {
  predicate: (record: T) => boolean;
  resolve: (record: T) => void;
}

/** What a transcriber is told about one utterance (websocket segment or HTTP upload). */
export interface Utterance {
  transport: 'realtime' | 'http';
  /** The speech segment (realtime) or the whole file (HTTP), in seconds. */
  durationSeconds: number;
  /** RMS as a fraction of full scale. */
  rms: number;
  /** Realtime: the websocket's index into `realtimeSessions`. */
  sessionIndex?: number;
}

/**
 * Picks an utterance's transcript from the audio itself, for concurrent callers: the queue is one
 * list for the whole server, so callers in several rooms at once cannot share it (nothing an STT
 * request carries names the room). Return undefined for "nothing recognized".
 */
export type Transcriber = (utterance: Utterance) => string | undefined;

export class SpeechStandin {
  readonly transcriptions: TranscriptionRecord[] = [];
  /** Consulted when no transcript is queued (queued transcripts come first). */
  transcriber: Transcriber | undefined;
  readonly speeches: SpeechRecord[] = [];
  readonly realtimeSessions: RealtimeSessionRecord[] = [];

  readonly options: Required<SpeechStandinOptions>;
  #queue: string[] = [];
  #wss = new WebSocketServer({ noServer: true });
  #itemCounter = 0;
  #eventCounter = 0;
  #transcriptionWaiters = new Set<Waiter<TranscriptionRecord>>();
  #speechWaiters = new Set<Waiter<SpeechRecord>>();

  constructor(options: SpeechStandinOptions = {}) {
    this.options = {
      speechThreshold: options.speechThreshold ?? 0.02,
      hangoverMs: options.hangoverMs ?? 500,
      msPerCharacter: options.msPerCharacter ?? 60,
      minSpeechSeconds: options.minSpeechSeconds ?? 0.3,
      maxSpeechSeconds: options.maxSpeechSeconds ?? 15,
    };
  }

  /** Queue transcripts: each utterance or upload takes the next one, in order. */
  queueTranscript(...texts: string[]): void {
    this.#queue.push(...texts);
  }

  /** Transcripts queued and not yet given. */
  get pendingTranscripts(): readonly string[] {
    return this.#queue;
  }

  /** Forget records and queued transcripts (ids keep counting). */
  clear(): void {
    this.transcriptions.length = 0;
    this.speeches.length = 0;
    this.realtimeSessions.length = 0;
    this.#queue.length = 0;
  }

  /** The first transcription matching `predicate`, waiting for it. Rejects after `timeoutMs`. */
  waitForTranscription(
    predicate: (record: TranscriptionRecord) => boolean = () => true,
    timeoutMs = 10_000,
  ): Promise<TranscriptionRecord> {
    return waitIn(this.transcriptions, this.#transcriptionWaiters, predicate, timeoutMs, 'transcription');
  }

  /** The first speech request matching `predicate`, waiting for it. Rejects after `timeoutMs`. */
  waitForSpeech(predicate: (record: SpeechRecord) => boolean = () => true, timeoutMs = 10_000): Promise<SpeechRecord> {
    return waitIn(this.speeches, this.#speechWaiters, predicate, timeoutMs, 'speech request');
  }

  /** Serve the realtime websocket on `server` (other upgrade paths are refused). */
  attach(server: Server): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path !== '/v1/realtime') {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
        return;
      }
      this.#wss.handleUpgrade(req, socket, head, (ws) => this.#onConnection(ws, req));
    });
  }

  /** Drop every websocket (the HTTP server's closeAllConnections does not see upgraded sockets). */
  closeAll(): void {
    for (const client of this.#wss.clients) client.terminate();
  }

  /** Whether `handleHttp` serves this path. */
  handles(path: string): boolean {
    return path === '/v1/audio/transcriptions' || path === '/v1/audio/speech';
  }

  /** Answer an HTTP request for one of `handles`' paths. Resolves to the status and error sent. */
  async handleHttp(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    body: Buffer,
  ): Promise<{ status: number; error?: string }> {
    if (req.method !== 'POST') return sendError(res, 405, `Method ${req.method} not allowed on ${path}`);
    if (path === '/v1/audio/transcriptions') return this.#transcribeHttp(req, res, body);
    return this.#speak(res, body);
  }

  // -------------------------------------------------------------------------------------------
  // POST /v1/audio/transcriptions

  #transcribeHttp(req: IncomingMessage, res: ServerResponse, body: Buffer): { status: number; error?: string } {
    const contentType = req.headers['content-type'] ?? '';
    const boundary = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
    if (!/^multipart\/form-data/i.test(contentType) || !boundary) {
      return sendError(res, 400, 'Expected a multipart/form-data body');
    }
    const parts = parseMultipart(body, boundary[1] ?? boundary[2] ?? '');
    const file = parts.find((part) => part.name === 'file');
    const fields: Record<string, string> = {};
    for (const part of parts) if (part !== file) fields[part.name] = part.data.toString('utf8');
    if (!file) return sendError(res, 400, "'file' is a required property");
    if (!fields.model) return sendError(res, 400, "'model' is a required property");
    let wav;
    try {
      wav = decodeWav(file.data);
    } catch (error) {
      return sendError(res, 400, `The stand-in decodes only 16-bit PCM WAV files: ${(error as Error).message}`);
    }
    const durationSeconds = wav.samples.length / wav.sampleRate;
    const { text, unscripted } = this.#nextTranscript({ transport: 'http', durationSeconds, rms: rms(wav.samples) });
    this.#recordTranscription({
      transport: 'http',
      model: fields.model,
      audio: bytesFromPcm(wav.samples),
      sampleRate: wav.sampleRate,
      durationSeconds,
      rms: rms(wav.samples),
      transcript: text,
      unscripted,
      filename: file.filename,
      contentType: file.contentType,
      channels: wav.channels,
      fields,
    });
    const format = fields.response_format ?? 'json';
    if (format === 'text') return sendText(res, 'text/plain; charset=utf-8', `${text}\n`);
    if (format === 'srt')
      return sendText(res, 'text/plain; charset=utf-8', `1\n00:00:00,000 --> ${srtTime(durationSeconds)}\n${text}\n\n`);
    if (format === 'vtt') {
      const end = srtTime(durationSeconds).replace(',', '.');
      return sendText(res, 'text/vtt; charset=utf-8', `WEBVTT\n\n00:00:00.000 --> ${end}\n${text}\n\n`);
    }
    if (format === 'verbose_json') {
      return sendJson(res, 200, {
        task: 'transcribe',
        language: fields.language ?? 'english',
        duration: durationSeconds,
        text,
        segments: [{ id: 0, seek: 0, start: 0, end: durationSeconds, text, tokens: [], temperature: 0 }],
      });
    }
    if (format !== 'json') return sendError(res, 400, `Unsupported response_format '${format}'`);
    return sendJson(res, 200, { text, usage: { type: 'duration', seconds: Math.ceil(durationSeconds) } });
  }

  // -------------------------------------------------------------------------------------------
  // POST /v1/audio/speech

  async #speak(res: ServerResponse, body: Buffer): Promise<{ status: number; error?: string }> {
    let params: Record<string, unknown>;
    try {
      params = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    } catch (error) {
      return sendError(res, 400, `Invalid JSON body: ${(error as Error).message}`);
    }
    const record: SpeechRecord = {
      index: this.speeches.length,
      at: new Date(),
      model: params.model,
      input: params.input,
      voice: params.voice,
      format: params.response_format,
      speed: params.speed,
      instructions: params.instructions,
      status: 200,
      audio: Buffer.alloc(0),
      sampleRate: SPEECH_SAMPLE_RATE,
      durationSeconds: 0,
      rms: 0,
    };
    const fail = (message: string) => {
      record.status = 400;
      record.error = message;
      this.#recordSpeech(record);
      return sendError(res, 400, message);
    };
    const { input, voice, model, speed } = params;
    if (typeof model !== 'string' || model === '') return fail("'model' is a required property");
    if (typeof input !== 'string' || input === '') return fail("'input' is a required property");
    if (voice === undefined) return fail("'voice' is a required property");
    const format = params.response_format ?? 'mp3';
    if (format !== 'pcm' && format !== 'wav') {
      return fail(`The stand-in synthesizes only response_format 'pcm' and 'wav', not '${JSON.stringify(format)}'`);
    }
    if (params.stream_format !== undefined && params.stream_format !== 'audio') {
      return fail(`The stand-in streams only stream_format 'audio', not '${JSON.stringify(params.stream_format)}'`);
    }
    const rate = typeof speed === 'number' && speed > 0 ? speed : 1;
    const { msPerCharacter, minSpeechSeconds, maxSpeechSeconds } = this.options;
    const seconds = Math.min(
      maxSpeechSeconds,
      Math.max(minSpeechSeconds, (input.length * msPerCharacter) / 1000 / rate),
    );
    const samples = voicedSignal(seconds, SPEECH_SAMPLE_RATE);
    const audio = format === 'wav' ? encodeWav(samples, SPEECH_SAMPLE_RATE) : bytesFromPcm(samples);
    record.audio = audio;
    record.durationSeconds = samples.length / SPEECH_SAMPLE_RATE;
    record.rms = rms(samples);
    this.#recordSpeech(record);
    if (res.destroyed) return { status: 200 };
    res.writeHead(200, {
      'content-type': format === 'wav' ? 'audio/wav' : 'audio/pcm',
      'transfer-encoding': 'chunked',
    });
    // In 100 ms pieces, as a streamed answer arrives.
    const piece = (SPEECH_SAMPLE_RATE / 10) * 2;
    for (let offset = 0; offset < audio.length; offset += piece) {
      if (res.destroyed) return { status: 200 };
      if (!res.write(audio.subarray(offset, offset + piece)))
        await new Promise((resolve) => res.once('drain', resolve));
    }
    res.end();
    return { status: 200 };
  }

  // -------------------------------------------------------------------------------------------
  // The realtime websocket

  #onConnection(ws: WebSocket, req: IncomingMessage): void {
    const url = new URL(req.url ?? '/', 'http://standin');
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    const session: RealtimeSessionRecord = {
      index: this.realtimeSessions.length,
      at: new Date(),
      url: req.url ?? '/',
      query: Object.fromEntries(url.searchParams),
      headers,
      clientEvents: [],
      serverEvents: [],
      session: undefined,
      receivedBytes: 0,
      receivedSeconds: 0,
      closed: false,
    };
    this.realtimeSessions.push(session);
    const connection = new RealtimeConnection(this, ws, session);
    ws.on('message', (data: RawData) => connection.onMessage(data));
    ws.on('close', () => {
      session.closed = true;
    });
    ws.on('error', () => {});
    connection.send({
      type: 'session.created',
      session: { type: 'transcription', id: `sess_standin_${session.index}` },
    });
  }

  /** @internal */
  nextItemId(): string {
    return `item_standin_${++this.#itemCounter}`;
  }

  /** @internal */
  nextEventId(): string {
    return `event_standin_${++this.#eventCounter}`;
  }

  /** @internal */
  takeTranscript(utterance: Utterance): { text: string; unscripted: boolean } {
    return this.#nextTranscript(utterance);
  }

  /** @internal */
  recordTranscription(record: Omit<TranscriptionRecord, 'index' | 'at'>): TranscriptionRecord {
    return this.#recordTranscription(record);
  }

  #nextTranscript(utterance: Utterance): { text: string; unscripted: boolean } {
    const text = this.#queue.shift() ?? this.transcriber?.(utterance);
    return text === undefined ? { text: '', unscripted: true } : { text, unscripted: false };
  }

  #recordTranscription(fields: Omit<TranscriptionRecord, 'index' | 'at'>): TranscriptionRecord {
    const record: TranscriptionRecord = { index: this.transcriptions.length, at: new Date(), ...fields };
    this.transcriptions.push(record);
    for (const waiter of this.#transcriptionWaiters) if (waiter.predicate(record)) waiter.resolve(record);
    return record;
  }

  #recordSpeech(record: SpeechRecord): void {
    record.index = this.speeches.length;
    this.speeches.push(record);
    for (const waiter of this.#speechWaiters) if (waiter.predicate(record)) waiter.resolve(record);
  }
}

/** One websocket: its session settings and the level detector over the audio it appends. */
class RealtimeConnection {
  #sampleRate = SPEECH_SAMPLE_RATE;
  /** Undefined until the client says; `null` = turn detection off (commits only). */
  #turnDetection: Record<string, unknown> | null | undefined;
  #model: string | undefined;
  // Audio kept from absolute sample position #keptFrom on (trimmed while nobody speaks).
  #kept: Int16Array = new Int16Array(0);
  #keptFrom = 0;
  #received = 0; // samples received
  #analyzed = 0; // samples already cut into windows
  #voicedRun = 0;
  #runStart = 0;
  #speaking = false;
  #segmentStart = -1; // -1: no segment pending
  #lastVoicedEnd = 0;
  #itemId = '';

  constructor(
    readonly standin: SpeechStandin,
    readonly ws: WebSocket,
    readonly record: RealtimeSessionRecord,
  ) {
    this.#model = record.query.model;
  }

  send(event: Record<string, unknown>): void {
    const full = { event_id: this.standin.nextEventId(), ...event };
    this.record.serverEvents.push(full);
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(full));
  }

  #error(message: string, code = 'invalid_value'): void {
    this.send({ type: 'error', error: { type: 'invalid_request_error', code, message, param: null } });
  }

  onMessage(data: RawData): void {
    let event: Record<string, unknown>;
    try {
      const text = Array.isArray(data)
        ? Buffer.concat(data).toString('utf8')
        : Buffer.isBuffer(data)
          ? data.toString('utf8')
          : Buffer.from(data).toString('utf8');
      event = JSON.parse(text) as Record<string, unknown>;
    } catch (error) {
      this.record.clientEvents.push({ type: 'invalid', error: (error as Error).message });
      return this.#error(`Invalid JSON: ${(error as Error).message}`, 'invalid_json');
    }
    const type = event.type;
    if (type === 'input_audio_buffer.append') {
      const audio = Buffer.from(typeof event.audio === 'string' ? event.audio : '', 'base64');
      this.record.clientEvents.push({ type, bytes: audio.length });
      return this.#append(pcmFromBytes(audio), audio.length);
    }
    this.record.clientEvents.push(event);
    switch (type) {
      case 'session.update':
      case 'transcription_session.update':
        return this.#update(event.session as Record<string, unknown> | undefined, type);
      case 'input_audio_buffer.commit':
        return this.#commit();
      case 'input_audio_buffer.clear':
        this.#reset(this.#received);
        return this.send({ type: 'input_audio_buffer.cleared' });
      default:
        return this.#error(`The stand-in does not handle client event '${String(type)}'`, 'unknown_event');
    }
  }

  #update(session: Record<string, unknown> | undefined, type: string): void {
    if (!session || typeof session !== 'object') return this.#error("'session' is a required property");
    this.record.session = session;
    const input = (session.audio as { input?: Record<string, unknown> } | undefined)?.input ?? {};
    const format = input.format as { type?: unknown; rate?: unknown } | undefined;
    const legacyFormat = session.input_audio_format;
    if (format !== undefined) {
      if (format.type !== undefined && format.type !== 'audio/pcm') {
        return this.#error(`The stand-in takes only audio/pcm input, not ${JSON.stringify(format.type)}`);
      }
      if (typeof format.rate === 'number') this.#sampleRate = format.rate;
    } else if (legacyFormat !== undefined && legacyFormat !== 'pcm16') {
      return this.#error(`The stand-in takes only pcm16 input, not ${JSON.stringify(legacyFormat)}`);
    }
    const turnDetection = 'turn_detection' in input ? input.turn_detection : session.turn_detection;
    if (turnDetection !== undefined) this.#turnDetection = turnDetection as Record<string, unknown> | null;
    const transcription = (input.transcription ?? session.input_audio_transcription) as { model?: unknown } | undefined;
    if (typeof transcription?.model === 'string') this.#model = transcription.model;
    this.send({
      type: type === 'session.update' ? 'session.updated' : 'transcription_session.updated',
      session,
    });
  }

  get #serverVad(): boolean {
    return this.#turnDetection !== null;
  }

  get #hangoverSamples(): number {
    const ms = this.#turnDetection?.silence_duration_ms;
    return Math.round(((typeof ms === 'number' ? ms : this.standin.options.hangoverMs) / 1000) * this.#sampleRate);
  }

  #append(samples: Int16Array, bytes: number): void {
    this.record.receivedBytes += bytes;
    this.#kept = concatPcm(this.#kept, samples);
    this.#received += samples.length;
    this.record.receivedSeconds = this.#received / this.#sampleRate;
    const window = Math.round((WINDOW_MS / 1000) * this.#sampleRate);
    while (this.#analyzed + window <= this.#received) {
      const start = this.#analyzed;
      const end = start + window;
      this.#analyzed = end;
      const level = rms(this.#slice(start, end));
      if (level >= this.standin.options.speechThreshold) {
        if (this.#voicedRun === 0) this.#runStart = start;
        this.#voicedRun += 1;
        if (this.#speaking) {
          this.#lastVoicedEnd = end;
        } else if (this.#voicedRun >= START_WINDOWS) {
          this.#speaking = true;
          this.#lastVoicedEnd = end;
          if (this.#segmentStart < 0) {
            this.#segmentStart = this.#runStart;
            this.#itemId = this.standin.nextItemId();
            if (this.#serverVad) {
              this.send({
                type: 'input_audio_buffer.speech_started',
                item_id: this.#itemId,
                audio_start_ms: this.#ms(this.#segmentStart),
              });
            }
          }
        }
      } else {
        this.#voicedRun = 0;
        if (this.#speaking && end - this.#lastVoicedEnd >= this.#hangoverSamples) {
          this.#speaking = false;
          if (this.#serverVad) this.#finish(end);
        }
      }
    }
    // While no segment is pending, keep only a second of history.
    if (this.#segmentStart < 0 && this.#voicedRun === 0) this.#trim(this.#received - this.#sampleRate);
  }

  #commit(): void {
    if (this.#segmentStart < 0) {
      // Nothing voiced since the last commit: no utterance to answer.
      this.send({ type: 'input_audio_buffer.committed', item_id: this.standin.nextItemId(), previous_item_id: null });
      this.#reset(this.#received);
      return;
    }
    this.#speaking = false;
    this.#finish(this.#received);
  }

  /** End the pending segment: speech_stopped (server VAD), committed, transcript deltas, completed. */
  #finish(bufferEnd: number): void {
    const start = this.#segmentStart;
    const end = this.#lastVoicedEnd;
    const itemId = this.#itemId;
    const segment = this.#slice(start, end);
    if (this.#serverVad) {
      this.send({ type: 'input_audio_buffer.speech_stopped', item_id: itemId, audio_end_ms: this.#ms(end) });
    }
    this.send({ type: 'input_audio_buffer.committed', item_id: itemId, previous_item_id: null });
    const durationSeconds = segment.length / this.#sampleRate;
    const { text, unscripted } = this.standin.takeTranscript({
      transport: 'realtime',
      durationSeconds,
      rms: rms(segment),
      sessionIndex: this.record.index,
    });
    this.standin.recordTranscription({
      transport: 'realtime',
      model: this.#model,
      audio: bytesFromPcm(segment),
      sampleRate: this.#sampleRate,
      durationSeconds,
      rms: rms(segment),
      transcript: text,
      unscripted,
      itemId,
      sessionIndex: this.record.index,
    });
    for (const delta of words(text)) {
      this.send({
        type: 'conversation.item.input_audio_transcription.delta',
        item_id: itemId,
        content_index: 0,
        delta,
      });
    }
    const inputTokens = Math.ceil(durationSeconds * 10);
    const outputTokens = Math.ceil(text.length / 4);
    this.send({
      type: 'conversation.item.input_audio_transcription.completed',
      item_id: itemId,
      content_index: 0,
      transcript: text,
      usage: {
        type: 'tokens',
        input_tokens: inputTokens,
        output_tokens: outputTokens,
        total_tokens: inputTokens + outputTokens,
        input_token_details: { audio_tokens: inputTokens, text_tokens: 0 },
      },
    });
    this.#reset(bufferEnd);
  }

  /** Forget the segment and the audio before `position`. */
  #reset(position: number): void {
    this.#segmentStart = -1;
    this.#speaking = false;
    this.#voicedRun = 0;
    this.#itemId = '';
    this.#trim(position);
  }

  #trim(position: number): void {
    const drop = Math.min(this.#kept.length, Math.max(0, position - this.#keptFrom));
    if (drop <= 0) return;
    this.#kept = this.#kept.slice(drop);
    this.#keptFrom += drop;
  }

  #slice(start: number, end: number): Int16Array {
    return this.#kept.subarray(Math.max(0, start - this.#keptFrom), Math.max(0, end - this.#keptFrom));
  }

  #ms(position: number): number {
    return Math.round((position / this.#sampleRate) * 1000);
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

function waitIn<T>(
  list: readonly T[],
  waiters: Set<Waiter<T>>,
  predicate: (record: T) => boolean,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const found = list.find(predicate);
  if (found !== undefined) return Promise.resolve(found);
  return new Promise((resolve, reject) => {
    const waiter: Waiter<T> = {
      predicate,
      resolve: (record) => {
        clearTimeout(timer);
        waiters.delete(waiter);
        resolve(record);
      },
    };
    const timer = setTimeout(() => {
      waiters.delete(waiter);
      reject(new Error(`SpeechStandin: no matching ${what} within ${timeoutMs} ms (${list.length} recorded)`));
    }, timeoutMs);
    waiters.add(waiter);
  });
}

/** The text cut after each word's trailing spaces, so the pieces join back to exactly `text`. */
function words(text: string): string[] {
  if (text === '') return [];
  const pieces = text.match(/\s*\S+\s*/g) ?? [text];
  return pieces.join('') === text ? pieces : [text];
}

interface FormPart {
  name: string;
  filename?: string;
  contentType?: string;
  data: Buffer;
}

/** The parts of a multipart/form-data body (RFC 7578), binary-safe. */
export function parseMultipart(body: Buffer, boundary: string): FormPart[] {
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: FormPart[] = [];
  let position = body.indexOf(delimiter);
  while (position >= 0) {
    const afterDelimiter = position + delimiter.length;
    if (body.toString('ascii', afterDelimiter, afterDelimiter + 2) === '--') break; // closing delimiter
    const headersStart = afterDelimiter + 2; // CRLF
    const headersEnd = body.indexOf('\r\n\r\n', headersStart);
    if (headersEnd < 0) break;
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delimiter]), headersEnd + 4);
    if (next < 0) break;
    const headerLines = body.toString('utf8', headersStart, headersEnd).split('\r\n');
    const part: FormPart = { name: '', data: body.subarray(headersEnd + 4, next) };
    for (const line of headerLines) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === 'content-disposition') {
        part.name = /\bname="([^"]*)"/i.exec(value)?.[1] ?? '';
        const filename = /\bfilename="([^"]*)"/i.exec(value)?.[1];
        if (filename !== undefined) part.filename = filename;
      } else if (name === 'content-type') {
        part.contentType = value;
      }
    }
    parts.push(part);
    position = next + 2;
  }
  return parts;
}

function srtTime(seconds: number): string {
  const ms = Math.round(seconds * 1000);
  const pad = (value: number, width = 2) => String(value).padStart(width, '0');
  return `${pad(Math.floor(ms / 3_600_000))}:${pad(Math.floor(ms / 60_000) % 60)}:${pad(Math.floor(ms / 1000) % 60)},${pad(ms % 1000, 3)}`;
}

function sendJson(res: ServerResponse, status: number, payload: unknown): { status: number } {
  const text = JSON.stringify(payload);
  if (!res.destroyed) {
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }
  return { status };
}

function sendText(res: ServerResponse, contentType: string, text: string): { status: number } {
  if (!res.destroyed) {
    res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }
  return { status: 200 };
}

/** The OpenAI error body shape, which the SDK turns into `APIError.error`. */
function sendError(res: ServerResponse, status: number, message: string): { status: number; error: string } {
  sendJson(res, status, { error: { message, type: 'invalid_request_error', param: null, code: null } });
  return { status, error: message };
}
