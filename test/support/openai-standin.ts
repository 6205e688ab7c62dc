/**
 * TEST STAND-IN FOR A PAID CLOUD API. NOT A MODEL.
 *
 * `ScriptedOpenAI` is a tiny local HTTP server that speaks just enough of the OpenAI Chat
 * Completions wire protocol for `@livekit/agents-plugin-openai`'s `openai.LLM` (and the `openai`
 * SDK it wraps) to talk to it: `GET /v1/models` and `POST /v1/chat/completions`, streaming (SSE) and
 * not. It understands nothing. Every answer comes from a responder function the test (or the
 * offline demo) supplies, so runs are deterministic, free, and need no network or API key.
 *
 * Point a client at it with `baseURL: standin.baseURL` and any non-empty `apiKey`.
 *
 * Wire details follow what the LiveKit plugin's stream parser (`@livekit/agents`
 * `src/inference/llm.ts`, `parseChoice`) needs, which is stricter than the OpenAI SDK:
 *  - a tool call is only handed to the agent when a chunk with `finish_reason: 'tool_calls'` (or
 *    `'stop'`) arrives, so every tool-call turn ends with one;
 *  - each `tool_calls` delta carries exactly one entry, and each call has its own `index`, because
 *    the parser closes the previous call only on "new id with a different index" (a new id on the
 *    same index silently replaces the previous call) and returns from the delta as soon as it
 *    closes one (a third call started in the same delta is dropped);
 *  - the parser returns at most one chunk per delta, and a delta that closes a call returns only
 *    the call, so text never shares a delta with a tool call or with the finish chunk (text in the
 *    `finish_reason` chunk of a tool-call turn is silently lost).
 *
 * Every request is recorded, in arrival order, in one list (`requests`), `GET /v1/models` and
 * unknown paths included; `chatRequests()` narrows it to chat completions.
 *
 * `POST /v1/embeddings` answers deterministic vectors (`standinEmbedding`: hashed words and
 * character trigrams, normalised, 256 dimensions unless the request asks for others), and can be
 * delayed, made to fail, or made to answer wrongly on demand (`embeddings`).
 *
 * The same server also serves OpenAI's speech APIs (the realtime transcription websocket,
 * `/v1/audio/transcriptions`, `/v1/audio/speech`): see `speech-standin.ts`; the property `speech`
 * holds their script (queued transcripts) and records. Their HTTP requests are in `requests` too.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
// Type-only imports (erased at runtime): they make the compiler check that the chunks and
// completions we emit have the shapes the real SDK declares.
import type { ChatCompletion, ChatCompletionChunk } from 'openai/resources/chat/completions';
import type { CompletionUsage } from 'openai/resources/completions';
import { SpeechStandin, type SpeechStandinOptions } from './speech-standin.js';

/** The one model this server lists. Clients may send any model name; it is echoed back. */
export const SCRIPTED_MODEL = 'scripted';

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

export interface ScriptedToolCall {
  name: string;
  /** An object is sent as JSON. A string is sent verbatim, to script malformed arguments. */
  arguments: Record<string, unknown> | string;
}

/** What the "model" says in one turn. Text (if any) is streamed before the tool calls (if any). */
export interface Reply {
  text?: string;
  toolCalls?: ScriptedToolCall[];
  /**
   * Wait this long before answering at all (no status line, no headers). The OpenAI SDK's request
   * timeout (`connOptions.timeoutMs` in LiveKit, 10 s by default) covers exactly this wait, so it
   * is the way to script a timeout.
   */
  delayMs?: number;
  /** Wait this long between streamed chunks (default 0), e.g. to interrupt a reply mid-stream. */
  chunkDelayMs?: number;
}

/** A message as the client sent it. Loosely typed on purpose: we record, we do not validate. */
export interface WireMessage {
  role: string;
  content?: unknown;
  name?: string;
  tool_call_id?: string;
  tool_calls?: Array<{ id?: string; type?: string; function?: { name?: string; arguments?: string } }>;
  [key: string]: unknown;
}

export interface RecordedRequest {
  /** Position in `requests` (since the last `clear()`). */
  index: number;
  at: Date;
  method: string;
  /** Path without the query string, e.g. `/v1/chat/completions`. */
  path: string;
  /** Lower-cased names (Node's convention); repeated headers joined with `, `. */
  headers: Record<string, string>;
  /** Parsed JSON body; `undefined` for requests without one (GET) or with invalid JSON. */
  body: unknown;
  /** `body.messages` when present, else `[]`. */
  messages: WireMessage[];
  // The outcome, filled in as the response is produced:
  /** HTTP status sent (undefined while the responder is still running). */
  status?: number;
  /** The reply the responder gave (chat completions only). */
  reply?: Reply;
  /** Why the request failed (responder threw, bad JSON, unknown path, ...). */
  error?: string;
  /** The client went away before the response was complete. */
  aborted?: boolean;
  /** When the last byte of the response was handed to the operating system. */
  finishedAt?: Date;
}

export interface ResponderContext {
  /** 0-based count of chat-completion requests this server has answered before this one. */
  chatIndex: number;
  /** Every request recorded so far (this one included, last). */
  history: readonly RecordedRequest[];
}

export type Responder = (request: RecordedRequest, context: ResponderContext) => Reply | Promise<Reply>;

/**
 * Throw this from a responder to answer with a specific HTTP status and an OpenAI-style error body
 * (429 to script rate limiting, 400 for a rejected request...). Any other thrown value gives 500.
 */
export class ScriptedHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error',
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = 'ScriptedHttpError';
  }
}

export const DEFAULT_REPLY_TEXT = 'This is a scripted reply.';

/** Used until `setResponder` is called: one short sentence, no tools. */
export const defaultResponder: Responder = () => ({ text: DEFAULT_REPLY_TEXT });

// ---------------------------------------------------------------------------------------------
// Inspecting requests
// ---------------------------------------------------------------------------------------------

/** The text of a message: a string content as is, or the `text` parts of an array joined by `\n`. */
export function messageText(message: WireMessage | undefined): string {
  const content = message?.content;
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part: unknown) =>
        part && typeof part === 'object' && typeof (part as { text?: unknown }).text === 'string'
          ? (part as { text: string }).text
          : '',
      )
      .filter((text) => text !== '')
      .join('\n');
  }
  return '';
}

/** The text of the last `user` message, or undefined when there is none. */
export function lastUserText(request: RecordedRequest): string | undefined {
  const message = request.messages.findLast((m) => m.role === 'user');
  return message ? messageText(message) : undefined;
}

/** The system prompt: every `system` and `developer` message, joined by `\n`. */
export function systemText(request: RecordedRequest): string {
  return request.messages
    .filter((m) => m.role === 'system' || m.role === 'developer')
    .map(messageText)
    .join('\n');
}

/** The text of every message, in order, joined by `\n` (tool results included, tool-call arguments not). */
export function allText(request: RecordedRequest): string {
  return request.messages
    .map(messageText)
    .filter((text) => text !== '')
    .join('\n');
}

/** Names of the tools the client offered, in the order sent (LiveKit sorts them by name). */
export function toolNames(request: RecordedRequest): string[] {
  const tools = (request.body as { tools?: unknown } | undefined)?.tools;
  if (!Array.isArray(tools)) return [];
  return tools
    .map((tool: unknown) => (tool as { function?: { name?: unknown } } | null)?.function?.name)
    .filter((name): name is string => typeof name === 'string');
}

export interface ToolResult {
  toolCallId: string;
  /** The name of the tool, found through the assistant message that made the call. */
  name: string | undefined;
  /** The raw content; LiveKit sends `JSON.stringify(returnValue)`. */
  content: string;
  /** `content` parsed as JSON, or the raw string when it is not JSON. */
  value: unknown;
}

/** True when the conversation ends with a tool result, i.e. the client wants the follow-up turn. */
export function isToolResult(request: RecordedRequest): boolean {
  return request.messages.at(-1)?.role === 'tool';
}

/**
 * The tool results at the end of the conversation (several after parallel calls), in order; empty
 * when the last message is not a tool result.
 */
export function trailingToolResults(request: RecordedRequest): ToolResult[] {
  const { messages } = request;
  let start = messages.length;
  while (start > 0 && messages[start - 1]?.role === 'tool') start -= 1;
  return messages.slice(start).map((message) => {
    const toolCallId = message.tool_call_id ?? '';
    const content = messageText(message);
    return { toolCallId, name: toolNameForCall(messages, toolCallId), content, value: parseJsonOr(content) };
  });
}

/** The last message when it is a tool result, else undefined. */
export function lastToolResult(request: RecordedRequest): ToolResult | undefined {
  return trailingToolResults(request).at(-1);
}

function toolNameForCall(messages: WireMessage[], toolCallId: string): string | undefined {
  for (const message of messages) {
    for (const call of message.tool_calls ?? []) {
      if (call.id === toolCallId) return call.function?.name;
    }
  }
  return undefined;
}

function parseJsonOr(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// ---------------------------------------------------------------------------------------------
// Building responders from rules
// ---------------------------------------------------------------------------------------------

export interface Rule {
  when: (request: RecordedRequest, context: ResponderContext) => boolean;
  reply: Reply | Responder;
  /** Fire at most this many times (then the rule is skipped). Unlimited when absent. */
  times?: number;
}

/**
 * A responder that answers with the first rule whose `when` matches, else with `fallback`
 * (a reply or a responder; the default responder when absent). Rules are tried in order.
 */
export function rules(list: Rule[], fallback: Reply | Responder = defaultResponder): Responder {
  const fired = new Map<Rule, number>();
  return async (request, context) => {
    for (const rule of list) {
      const count = fired.get(rule) ?? 0;
      if (rule.times !== undefined && count >= rule.times) continue;
      if (!rule.when(request, context)) continue;
      fired.set(rule, count + 1);
      return typeof rule.reply === 'function' ? rule.reply(request, context) : rule.reply;
    }
    return typeof fallback === 'function' ? fallback(request, context) : fallback;
  };
}

/** Predicate: the last message is from the user and its text contains / matches `pattern`. */
export function userSaid(pattern: string | RegExp): (request: RecordedRequest) => boolean {
  return (request) => {
    const last = request.messages.at(-1);
    if (last?.role !== 'user') return false;
    const text = messageText(last);
    return typeof pattern === 'string' ? text.toLowerCase().includes(pattern.toLowerCase()) : pattern.test(text);
  };
}

/** Predicate: the conversation ends with a tool result (of the tool `name`, when given). */
/** The request offers this tool to the model. */
export const offers = (tool: string) => (request: RecordedRequest) => toolNames(request).includes(tool);

/** Every predicate holds. */
export const both =
  (...predicates: Array<(request: RecordedRequest) => boolean>) =>
  (request: RecordedRequest) =>
    predicates.every((p) => p(request));

export function toolResultFor(name?: string): (request: RecordedRequest) => boolean {
  return (request) => {
    const results = trailingToolResults(request);
    return results.length > 0 && (name === undefined || results.some((result) => result.name === name));
  };
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

interface Waiter {
  predicate: (request: RecordedRequest) => boolean;
  resolve: (request: RecordedRequest) => void;
}

// ---------------------------------------------------------------------------------------------
// Embeddings: deterministic vectors, no model
// ---------------------------------------------------------------------------------------------

/** Dimension of the stand-in's vectors when a request names none. */
export const STANDIN_EMBEDDING_DIMENSIONS = 256;

function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

/**
 * A deterministic "embedding": a hashed bag of the text's words and of their character trigrams
 * (with word boundaries), signed, L2-normalised. Texts that share words or parts of words are near
 * each other (typos and other word forms share most trigrams); it understands nothing else.
 */
export function standinEmbedding(text: string, dimensions = STANDIN_EMBEDDING_DIMENSIONS): number[] {
  const vector = new Array<number>(dimensions).fill(0);
  const add = (feature: string, weight: number) => {
    const hash = fnv1a(feature);
    vector[hash % dimensions]! += hash & 0x80000000 ? -weight : weight;
  };
  const words =
    text
      .normalize('NFKC')
      .toLowerCase()
      .match(/[\p{L}\p{N}]+/gu) ?? [];
  for (const word of words) {
    add(`w:${word}`, 1);
    const padded = `#${word}#`;
    for (let i = 0; i + 3 <= padded.length; i += 1) add(`t:${padded.slice(i, i + 3)}`, 0.5);
  }
  const norm = Math.hypot(...vector);
  if (norm === 0) {
    vector[0] = 1; // no words at all: a fixed direction, never a zero vector
    return vector;
  }
  return vector.map((x) => x / norm);
}

/** The script of `/v1/embeddings`: delays, failures on demand, and tampered answers. */
export class EmbeddingsStandin {
  /** Wait this long before answering each request. */
  delayMs = 0;
  /** Change every answer before it is sent (to script wrong counts, dimensions, NaN...). */
  tamper:
    ((answer: { data: Array<{ index: number; embedding: unknown }> } & Record<string, unknown>) => unknown) | undefined;
  #failures = 0;
  #failStatus = 503;

  /** The next `count` requests fail with HTTP `status` (default 503). */
  failNext(count: number, status = 503): void {
    this.#failures = count;
    this.#failStatus = status;
  }

  /** Every request fails until `failNext(0)`. */
  failAll(status = 503): void {
    this.failNext(Number.POSITIVE_INFINITY, status);
  }

  /** Consumed by the server for each request: the status to fail with, or undefined. */
  takeFailure(): number | undefined {
    if (this.#failures <= 0) return undefined;
    this.#failures -= 1;
    return this.#failStatus;
  }

  reset(): void {
    this.delayMs = 0;
    this.tamper = undefined;
    this.#failures = 0;
  }
}

export function isEmbeddingRequest(request: RecordedRequest): boolean {
  return request.method === 'POST' && request.path === '/v1/embeddings';
}

/** The texts an embeddings request asked for. */
export function embeddingInputs(request: RecordedRequest): string[] {
  const input = (request.body as { input?: unknown } | undefined)?.input;
  if (typeof input === 'string') return [input];
  return Array.isArray(input) ? input.filter((x): x is string => typeof x === 'string') : [];
}

export class ScriptedOpenAI {
  /** Every request received since the last `clear()`, in arrival order. */
  readonly requests: RecordedRequest[] = [];
  /** The embeddings route's script: `delayMs`, `failNext(n)`, `tamper`. */
  readonly embeddings = new EmbeddingsStandin();
  /** The speech routes: `queueTranscript(...)`, and the `transcriptions` and `speeches` they recorded. */
  readonly speech: SpeechStandin;

  #server: Server | undefined;
  #port: number | undefined;
  #responder: Responder;
  // Counters are never reset (not even by clear()): ids must stay unique for the server's life,
  // because an agent's chat context keeps old calls and would otherwise see duplicates.
  #callCounter = 0;
  #completionCounter = 0;
  #chatCounter = 0;
  #waiters = new Set<Waiter>();
  // Pending delays, so that stop() does not wait for a scripted 30 s pause to run out.
  #timers = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();

  constructor(responder: Responder = defaultResponder, speechOptions: SpeechStandinOptions = {}) {
    this.#responder = responder;
    this.speech = new SpeechStandin(speechOptions);
  }

  /** Listen on 127.0.0.1 (never on other interfaces). Port 0 picks a free one. */
  async start(port = 0): Promise<void> {
    if (this.#server) throw new Error('ScriptedOpenAI is already started');
    const server = createServer((req, res) => {
      this.#handle(req, res).catch((error: unknown) => {
        // #handle answers its own errors; this is only reached if writing that answer failed.
        if (!res.headersSent && !res.destroyed) sendError(res, 500, String(error), 'server_error');
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.speech.attach(server);
    this.#server = server;
    this.#port = (server.address() as AddressInfo).port;
  }

  /** Stop listening and drop open connections (the SDK keeps them alive; close() alone would wait). */
  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    for (const pending of this.#timers) {
      clearTimeout(pending.timer);
      pending.resolve();
    }
    this.#timers.clear();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    this.speech.closeAll();
    await closed;
  }

  /** True between start() and stop(). */
  get listening(): boolean {
    return this.#server !== undefined;
  }

  get port(): number {
    if (this.#port === undefined) throw new Error('ScriptedOpenAI is not started');
    return this.#port;
  }

  /** `http://127.0.0.1:PORT/v1`, the value for `baseURL`. */
  get baseURL(): string {
    return `http://127.0.0.1:${this.port}/v1`;
  }

  /** Replace the script. Requests already being answered keep the responder they started with. */
  setResponder(responder: Responder): void {
    this.#responder = responder;
  }

  /** Shorthand for `speech.queueTranscript`: the next utterances (or uploads) are heard as these texts. */
  queueTranscript(...texts: string[]): void {
    this.speech.queueTranscript(...texts);
  }

  /** Forget recorded requests, speech records and queued transcripts (ids and counters keep counting). */
  clear(): void {
    this.requests.length = 0;
    this.speech.clear();
  }

  /** Recorded requests matching `predicate`. */
  filter(predicate: (request: RecordedRequest) => boolean): RecordedRequest[] {
    return this.requests.filter(predicate);
  }

  /** Recorded `POST /v1/embeddings` requests. */
  embeddingRequests(): RecordedRequest[] {
    return this.filter(isEmbeddingRequest);
  }

  /** Recorded `POST /v1/chat/completions` requests. */
  chatRequests(): RecordedRequest[] {
    return this.filter(isChatRequest);
  }

  /**
   * Recorded requests carrying `X-LiveKit-Room-Id: roomId` (the LiveKit plugin adds it, with
   * `X-LiveKit-Job-Id`, when it runs inside a job). Use it to tell concurrent rooms apart.
   */
  forRoom(roomId: string): RecordedRequest[] {
    return this.filter((request) => request.headers['x-livekit-room-id'] === roomId);
  }

  /** Recorded requests carrying `X-LiveKit-Job-Id: jobId`. */
  forJob(jobId: string): RecordedRequest[] {
    return this.filter((request) => request.headers['x-livekit-job-id'] === jobId);
  }

  /**
   * The first recorded request matching `predicate` (chat completions by default), waiting for it
   * if it has not arrived yet. Rejects after `timeoutMs`.
   */
  waitFor(
    predicate: (request: RecordedRequest) => boolean = isChatRequest,
    timeoutMs = 10_000,
  ): Promise<RecordedRequest> {
    const found = this.requests.find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        predicate,
        resolve: (request) => {
          clearTimeout(timer);
          this.#waiters.delete(waiter);
          resolve(request);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(
          new Error(`ScriptedOpenAI: no matching request within ${timeoutMs} ms (${this.requests.length} recorded)`),
        );
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  // -------------------------------------------------------------------------------------------

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // A client that disconnects mid-stream makes later writes fail; we check `destroyed` before
    // writing, and this keeps a late 'error' from becoming an uncaught exception.
    res.on('error', () => {});
    const rawBytes = await readBody(req);
    const method = req.method ?? 'GET';
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    // Multipart uploads (audio files) are binary: they are not parsed here, nor recorded as a body.
    const multipart = /^multipart\//i.test(req.headers['content-type'] ?? '');
    const rawBody = multipart ? '' : rawBytes.toString('utf8');
    let body: unknown;
    let bodyError: string | undefined;
    if (rawBody.length > 0) {
      try {
        body = JSON.parse(rawBody);
      } catch (error) {
        bodyError = `Invalid JSON body: ${(error as Error).message}`;
      }
    }
    const messages = Array.isArray((body as { messages?: unknown } | undefined)?.messages)
      ? (body as { messages: WireMessage[] }).messages
      : [];
    const record: RecordedRequest = {
      index: this.requests.length,
      at: new Date(),
      method,
      path,
      headers: flattenHeaders(req),
      body,
      messages,
    };
    this.requests.push(record);
    res.on('finish', () => {
      record.finishedAt = new Date();
    });
    res.on('close', () => {
      if (!res.writableFinished) record.aborted = true;
    });
    this.#notify(record);

    const fail = (status: number, message: string, type: string, code: string | null = null) => {
      record.status = status;
      record.error = message;
      sendError(res, status, message, type, code);
    };

    if (path === '/v1/models' || path.startsWith('/v1/models/')) {
      if (method !== 'GET') return fail(405, `Method ${method} not allowed on ${path}`, 'invalid_request_error');
      const id = path === '/v1/models' ? undefined : decodeURIComponent(path.slice('/v1/models/'.length));
      if (id !== undefined && id !== SCRIPTED_MODEL) {
        return fail(404, `The model '${id}' does not exist`, 'invalid_request_error', 'model_not_found');
      }
      const model = { id: SCRIPTED_MODEL, object: 'model', created: 0, owned_by: 'scripted-openai-standin' };
      record.status = 200;
      sendJson(res, 200, id === undefined ? { object: 'list', data: [model] } : model);
      return;
    }

    if (this.speech.handles(path)) {
      const outcome = await this.speech.handleHttp(req, res, path, rawBytes);
      record.status = outcome.status;
      if (outcome.error !== undefined) record.error = outcome.error;
      return;
    }

    if (path === '/v1/embeddings') {
      if (method !== 'POST') return fail(405, `Method ${method} not allowed on ${path}`, 'invalid_request_error');
      if (bodyError !== undefined) return fail(400, bodyError, 'invalid_request_error');
      const request = body as { input?: unknown; model?: unknown; dimensions?: unknown } | undefined;
      const inputs = embeddingInputs(record);
      if (inputs.length === 0 || (Array.isArray(request?.input) && inputs.length !== request.input.length)) {
        return fail(400, "'input' must be a string or an array of strings", 'invalid_request_error');
      }
      const dimensions =
        typeof request?.dimensions === 'number' && Number.isInteger(request.dimensions) && request.dimensions > 0
          ? Math.min(request.dimensions, 4096)
          : STANDIN_EMBEDDING_DIMENSIONS;
      const failure = this.embeddings.takeFailure();
      if (this.embeddings.delayMs) await this.#sleep(this.embeddings.delayMs);
      if (res.destroyed) return;
      if (failure !== undefined) return fail(failure, 'scripted embeddings failure', 'server_error');
      const answer = {
        object: 'list',
        data: inputs.map((text, index) => ({
          object: 'embedding',
          index,
          embedding: standinEmbedding(text, dimensions),
        })),
        model: typeof request?.model === 'string' ? request.model : SCRIPTED_MODEL,
        usage: { prompt_tokens: inputs.join(' ').length, total_tokens: inputs.join(' ').length },
      };
      record.status = 200;
      sendJson(res, 200, this.embeddings.tamper ? this.embeddings.tamper(answer) : answer);
      return;
    }

    if (path !== '/v1/chat/completions') {
      return fail(
        404,
        `Unknown path ${method} ${path} (this stand-in serves /v1/models, /v1/chat/completions, /v1/embeddings, /v1/audio/transcriptions, /v1/audio/speech and the /v1/realtime websocket)`,
        'invalid_request_error',
        'unknown_url',
      );
    }
    if (method !== 'POST') return fail(405, `Method ${method} not allowed on ${path}`, 'invalid_request_error');
    if (bodyError !== undefined) return fail(400, bodyError, 'invalid_request_error');
    if (!body || typeof body !== 'object' || !Array.isArray((body as { messages?: unknown }).messages)) {
      return fail(400, "'messages' is a required property", 'invalid_request_error');
    }

    const context: ResponderContext = { chatIndex: this.#chatCounter++, history: this.requests.slice() };
    let reply: Reply;
    try {
      reply = await this.#responder(record, context);
    } catch (error) {
      if (error instanceof ScriptedHttpError) return fail(error.status, error.message, error.type, error.code);
      const message = `Scripted responder threw: ${error instanceof Error ? error.message : String(error)}`;
      return fail(500, message, 'server_error', 'scripted_responder_error');
    }
    record.reply = reply;

    if (reply.delayMs) await this.#sleep(reply.delayMs);
    if (res.destroyed) return;

    const typed = body as { model?: unknown; stream?: unknown; stream_options?: { include_usage?: unknown } };
    const model = typeof typed.model === 'string' ? typed.model : SCRIPTED_MODEL;
    const completionId = `chatcmpl-scripted-${++this.#completionCounter}`;
    // Ids are given when the reply is sent, one per call, so a reply object reused by a rule still
    // gets fresh ids every time.
    const calls = (reply.toolCalls ?? []).map((call) => ({
      id: `call_${++this.#callCounter}`,
      name: call.name,
      arguments: typeof call.arguments === 'string' ? call.arguments : JSON.stringify(call.arguments),
    }));
    const usage = estimateUsage(messages, reply.text ?? '', calls);
    const finishReason = calls.length > 0 ? 'tool_calls' : 'stop';
    record.status = 200;

    if (typed.stream !== true) {
      const completion: ChatCompletion = {
        id: completionId,
        object: 'chat.completion',
        created: nowSeconds(),
        model,
        choices: [
          {
            index: 0,
            finish_reason: finishReason,
            logprobs: null,
            message: {
              role: 'assistant',
              content: reply.text ?? null,
              refusal: null,
              ...(calls.length > 0
                ? {
                    tool_calls: calls.map((call) => ({
                      id: call.id,
                      type: 'function' as const,
                      function: { name: call.name, arguments: call.arguments },
                    })),
                  }
                : {}),
            },
          },
        ],
        usage,
      };
      sendJson(res, 200, completion, { 'x-request-id': `req_${completionId}` });
      return;
    }

    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-request-id': `req_${completionId}`,
    });
    const created = nowSeconds();
    const chunk = (
      delta: ChatCompletionChunk.Choice.Delta,
      finish: ChatCompletionChunk.Choice['finish_reason'] = null,
    ): ChatCompletionChunk => ({
      id: completionId,
      object: 'chat.completion.chunk',
      created,
      model,
      choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
    });
    const events: ChatCompletionChunk[] = [chunk({ role: 'assistant', content: '' })];
    for (const piece of splitText(reply.text ?? '')) events.push(chunk({ content: piece }));
    calls.forEach((call, index) => {
      events.push(
        chunk({ tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.name, arguments: '' } }] }),
      );
      for (const fragment of splitArguments(call.arguments)) {
        events.push(chunk({ tool_calls: [{ index, function: { arguments: fragment } }] }));
      }
    });
    events.push(chunk({}, finishReason));
    // Like the real API, usage comes only when asked for (LiveKit always asks).
    if (typed.stream_options?.include_usage === true) {
      events.push({ id: completionId, object: 'chat.completion.chunk', created, model, choices: [], usage });
    }

    for (const event of events) {
      if (res.destroyed) return;
      res.write(`data: ${JSON.stringify(event)}\n\n`);
      if (reply.chunkDelayMs) await this.#sleep(reply.chunkDelayMs);
    }
    if (!res.destroyed) res.end('data: [DONE]\n\n');
  }

  #notify(record: RecordedRequest): void {
    for (const waiter of this.#waiters) {
      if (waiter.predicate(record)) waiter.resolve(record);
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const pending = {
        timer: setTimeout(() => {
          this.#timers.delete(pending);
          resolve();
        }, ms),
        resolve,
      };
      this.#timers.add(pending);
    });
  }
}

export function isChatRequest(request: RecordedRequest): boolean {
  return request.method === 'POST' && request.path === '/v1/chat/completions';
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

function flattenHeaders(req: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return headers;
}

function sendJson(res: ServerResponse, status: number, payload: unknown, headers: Record<string, string> = {}): void {
  if (res.destroyed) return;
  const text = JSON.stringify(payload);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** The error body shape the OpenAI API uses, which the SDK turns into `APIError.error`. */
function sendError(
  res: ServerResponse,
  status: number,
  message: string,
  type: string,
  code: string | null = null,
): void {
  sendJson(res, status, { error: { message, type, param: null, code } });
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/**
 * Up to four pieces cut at word boundaries, joining back to exactly `text`, so the client really
 * assembles a stream instead of receiving one delta.
 */
export function splitText(text: string, maxPieces = 4): string[] {
  if (text === '') return [];
  const words = text.match(/\s*\S+\s*/g) ?? [text];
  if (words.join('') !== text) return [text]; // whitespace-only text: send as is
  const perPiece = Math.ceil(words.length / maxPieces);
  const pieces: string[] = [];
  for (let i = 0; i < words.length; i += perPiece) pieces.push(words.slice(i, i + perPiece).join(''));
  return pieces;
}

/** At least two fragments (any JSON object is 2+ characters), cut at thirds. */
export function splitArguments(json: string): string[] {
  if (json.length < 2) return [json];
  if (json.length < 3) return [json.slice(0, 1), json.slice(1)];
  const a = Math.floor(json.length / 3);
  const b = Math.floor((2 * json.length) / 3);
  return [json.slice(0, a), json.slice(a, b), json.slice(b)];
}

/** Rough counts (4 characters a token): enough for metrics code paths, not a tokenizer. */
function estimateUsage(
  messages: WireMessage[],
  text: string,
  calls: Array<{ name: string; arguments: string }>,
): CompletionUsage {
  const tokens = (chars: number) => Math.ceil(chars / 4);
  const promptTokens = tokens(messages.reduce((sum, m) => sum + messageText(m).length, 0));
  const completionTokens = tokens(text.length + calls.reduce((sum, c) => sum + c.name.length + c.arguments.length, 0));
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
  };
}
