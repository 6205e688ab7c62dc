import { z } from 'zod';
import { DEFAULTS } from '../defaults.js';
import { MemoryError } from '../errors.js';
import { redactUrl } from '../redact.js';

/** Where and how to embed: an OpenAI-compatible `POST {baseURL}/embeddings`. */
export interface EmbeddingOptions {
  /** The embedding model, e.g. `text-embedding-3-small` (MEMORY_EMBEDDING_MODEL). */
  model: string;
  /** Default: OPENAI_BASE_URL, else https://api.openai.com/v1. */
  baseURL?: string;
  /** Default: OPENAI_API_KEY. Sent as a bearer token; never logged. */
  apiKey?: string;
  /** Ask the model for this many dimensions (`dimensions`), and refuse any other (MEMORY_EMBEDDING_DIMENSIONS). */
  dimensions?: number;
  /** One request for a batch of memories gives up after this long (default 30 s). */
  requestTimeoutMs?: number;
  /** Search embeds its query within this long, else it answers lexically (default 1 s). */
  queryTimeoutMs?: number;
  /** Memories per request (default 32). */
  batchSize?: number;
  /** Vector matches below this cosine similarity are left out (default 0.3). */
  minSimilarity?: number;
  /** Backoff after a failure: first retry after minMs, doubling up to maxMs (default 0.5 s to 30 s). */
  retry?: { minMs?: number; maxMs?: number };
  /** Called with every background failure (the write it follows has already succeeded). */
  onError?: (error: MemoryError) => void;
  /** For tests: the fetch to use. */
  fetch?: typeof fetch;
}

/**
 * The answer is untrusted input: a misconfigured proxy, another API, or a model server with a bug
 * could send anything. Numbers must be finite (zod refuses NaN and Infinity), indexes must name
 * each input exactly once, every vector must have the same dimension (the configured one, when
 * set), within pgvector's limit, and not be all zeros (it has no direction).
 */
const EmbeddingAnswer = z.object({
  data: z.array(
    z.object({
      index: z.number().int().min(0),
      embedding: z.array(z.number()).min(1).max(DEFAULTS.embeddingMaxDimensions),
    }),
  ),
});

/** Check an answer for `count` inputs; returns the vectors in input order. */
export function checkEmbeddingAnswer(answer: unknown, count: number, dimensions: number | undefined): number[][] {
  const parsed = EmbeddingAnswer.safeParse(answer);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new MemoryError(
      'INVALID_EMBEDDING',
      `the embeddings endpoint answered in an unexpected shape (${issue.path.join('.') || 'answer'}: ${issue.message}); nothing was stored`,
    );
  }
  const { data } = parsed.data;
  if (data.length !== count) {
    throw new MemoryError(
      'INVALID_EMBEDDING',
      `the embeddings endpoint returned ${data.length} vectors for ${count} inputs; nothing was stored`,
    );
  }
  const vectors: Array<number[] | undefined> = new Array<number[] | undefined>(count).fill(undefined);
  for (const item of data) {
    if (item.index >= count || vectors[item.index]) {
      throw new MemoryError(
        'INVALID_EMBEDDING',
        `the embeddings endpoint returned index ${item.index} for ${count} inputs (out of range or twice); nothing was stored`,
      );
    }
    vectors[item.index] = item.embedding;
  }
  const expected = dimensions ?? data[0]!.embedding.length;
  for (const [i, vector] of vectors.entries()) {
    if (vector!.length !== expected) {
      throw new MemoryError(
        'INVALID_EMBEDDING',
        `the embeddings endpoint returned a vector of ${vector!.length} dimensions for input ${i}, expected ${expected}; nothing was stored`,
      );
    }
    if (vector!.every((x) => x === 0)) {
      throw new MemoryError(
        'INVALID_EMBEDDING',
        `the embeddings endpoint returned a zero vector for input ${i}; nothing was stored`,
      );
    }
  }
  return vectors as number[][];
}

const ErrorBody = z.object({ error: z.object({ message: z.string() }) });

/** The longest answer read (a batch of 256 vectors of 16,000 numbers is about 80 MB of JSON). */
const MAX_ANSWER_BYTES = 128 * 1024 * 1024;

/** A minimal client of `POST {baseURL}/embeddings` (plain fetch; the answer checked with zod). */
export class EmbeddingClient {
  readonly model: string;
  readonly baseURL: string;
  readonly dimensions: number | undefined;
  readonly #apiKey: string | undefined;
  readonly #fetch: typeof fetch;
  /** The dimension of the first valid answer, when none is configured: every later one must match. */
  #seenDimensions: number | undefined;

  constructor(options: EmbeddingOptions & { baseURL: string }) {
    this.model = options.model;
    this.dimensions = options.dimensions;
    this.#apiKey = options.apiKey;
    this.#fetch = options.fetch ?? fetch;
    let url: URL;
    try {
      url = new URL(options.baseURL);
    } catch {
      throw new MemoryError(
        'INVALID_CONFIG',
        `OPENAI_BASE_URL (the embeddings endpoint's base URL) is not a URL: ${redactUrl(options.baseURL)}`,
      );
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new MemoryError('INVALID_CONFIG', `OPENAI_BASE_URL must be an http(s) URL, got ${url.protocol}`);
    }
    this.baseURL = options.baseURL.replace(/\/+$/, '');
  }

  /** Where requests go, without credentials (for messages and the doctor). */
  get endpoint(): string {
    return `${redactUrl(this.baseURL)}/embeddings`;
  }

  /** The vectors of `texts`, in order. EMBEDDING_FAILED or INVALID_EMBEDDING, never a partial answer. */
  async embed(texts: readonly string[], timeoutMs: number, signal?: AbortSignal): Promise<number[][]> {
    if (texts.length === 0) return [];
    const timeout = AbortSignal.timeout(timeoutMs);
    const abort = signal ? AbortSignal.any([signal, timeout]) : timeout;
    let response: Response;
    let text: string;
    try {
      response = await this.#fetch(`${this.baseURL}/embeddings`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(this.#apiKey ? { authorization: `Bearer ${this.#apiKey}` } : {}),
        },
        body: JSON.stringify({
          model: this.model,
          input: texts,
          encoding_format: 'float',
          ...(this.dimensions ? { dimensions: this.dimensions } : {}),
        }),
        signal: abort,
      });
      text = await response.text();
    } catch (error) {
      const why = timeout.aborted
        ? `no answer within ${timeoutMs} ms`
        : signal?.aborted
          ? 'cancelled'
          : (error as Error).message;
      throw new MemoryError('EMBEDDING_FAILED', `the embeddings endpoint ${this.endpoint} failed: ${why}`, {
        cause: error,
      });
    }
    if (!response.ok) {
      let detail = '';
      try {
        const body = ErrorBody.safeParse(JSON.parse(text));
        if (body.success) detail = `: ${body.data.error.message.slice(0, 300)}`;
      } catch {
        // not JSON: the status says enough
      }
      throw new MemoryError(
        'EMBEDDING_FAILED',
        `the embeddings endpoint ${this.endpoint} answered HTTP ${response.status}${detail}` +
          (response.status === 401 ? ' (check OPENAI_API_KEY)' : '') +
          (response.status === 404 ? ` (check OPENAI_BASE_URL and MEMORY_EMBEDDING_MODEL=${this.model})` : ''),
      );
    }
    if (text.length > MAX_ANSWER_BYTES) {
      throw new MemoryError('INVALID_EMBEDDING', `the embeddings endpoint answered ${text.length} bytes; refused`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new MemoryError('INVALID_EMBEDDING', 'the embeddings endpoint answered with something that is not JSON');
    }
    const vectors = checkEmbeddingAnswer(json, texts.length, this.dimensions ?? this.#seenDimensions);
    this.#seenDimensions ??= vectors[0]!.length;
    return vectors;
  }
}

/** What is embedded for a memory: its key as words, and its value, cut to a length models take. */
export function embeddingText(key: string, value: string): string {
  return `${key.replace(/_+/g, ' ')}: ${value}`.slice(0, DEFAULTS.embeddingMaxChars);
}
