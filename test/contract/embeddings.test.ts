import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MemoryError,
  checkEmbeddingAnswer,
  isMemoryError,
  openMemory,
  type MemoryStore,
  type UserMemory,
} from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import { cli } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { ScriptedOpenAI, embeddingInputs, isEmbeddingRequest, standinEmbedding } from '../support/openai-standin.js';
import { tempDataDir } from '../support/backends.js';

/**
 * Optional embeddings on real parts: the embedded database with PGlite's pgvector (vectors), a real
 * PostgreSQL without pgvector (the lexical fallback), and the OpenAI stand-in's deterministic
 * /v1/embeddings. Waits are on events (a request arriving, the embedder settling), never on time.
 */

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, guardMs = 20_000): Promise<T> {
  const deadline = Date.now() + guardMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe('embeddings: the answer of /v1/embeddings is untrusted', () => {
  const ok = (n: number, dims = 3) => ({
    data: Array.from({ length: n }, (_, index) => ({
      index,
      embedding: Array.from({ length: dims }, (_, i) => i + 1),
    })),
  });
  const cases: Array<[string, unknown, number, number | undefined]> = [
    ['not an object', 'vectors', 1, undefined],
    ['no data', {}, 1, undefined],
    ['fewer vectors than inputs', ok(1), 2, undefined],
    ['more vectors than inputs', ok(3), 2, undefined],
    ['an index twice', { data: [ok(1).data[0], ok(1).data[0]] }, 2, undefined],
    ['an index out of range', { data: [{ index: 5, embedding: [1, 2] }] }, 1, undefined],
    ['NaN as a string', { data: [{ index: 0, embedding: [1, 'NaN', 2] }] }, 1, undefined],
    ['null in a vector', { data: [{ index: 0, embedding: [1, null, 2] }] }, 1, undefined],
    ['Infinity (1e999 in JSON)', JSON.parse('{"data":[{"index":0,"embedding":[1,1e999]}]}'), 1, undefined],
    ['an empty vector', { data: [{ index: 0, embedding: [] }] }, 1, undefined],
    ['a zero vector', { data: [{ index: 0, embedding: [0, 0, 0] }] }, 1, undefined],
    ['vectors of two dimensions', { data: [ok(1, 3).data[0], { index: 1, embedding: [1, 2] }] }, 2, undefined],
    ['another dimension than configured', ok(1, 3), 1, 4],
    [
      'more dimensions than pgvector takes',
      { data: [{ index: 0, embedding: new Array(16_001).fill(1) }] },
      1,
      undefined,
    ],
  ];
  for (const [name, answer, count, dims] of cases) {
    it(`refuses ${name} with INVALID_EMBEDDING`, () => {
      let caught: unknown;
      try {
        checkEmbeddingAnswer(answer, count, dims);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(MemoryError);
      expect((caught as MemoryError).code).toBe('INVALID_EMBEDDING');
    });
  }

  it('accepts a well-formed answer and returns the vectors in input order', () => {
    const answer = {
      data: [
        { index: 1, embedding: [0, 1] },
        { index: 0, embedding: [1, 0] },
      ],
    };
    expect(checkEmbeddingAnswer(answer, 2, 2)).toEqual([
      [1, 0],
      [0, 1],
    ]);
  });

  it('the stand-in embeds deterministically, normalised, and similar texts nearer than others', () => {
    const a = standinEmbedding('dentist Hiroshi Yamaguchi');
    expect(standinEmbedding('dentist Hiroshi Yamaguchi')).toEqual(a);
    expect(Math.hypot(...a)).toBeCloseTo(1, 10);
    const dot = (x: number[], y: number[]) => x.reduce((s, v, i) => s + v * y[i]!, 0);
    expect(dot(a, standinEmbedding('my dentist Yamagucci'))).toBeGreaterThan(dot(a, standinEmbedding('Lisbon')));
  });
});

describe('embeddings on the embedded database (PGlite with pgvector)', () => {
  const standin = new ScriptedOpenAI();
  let memory: MemoryStore;
  let dataDir: string;
  const errors: MemoryError[] = [];
  const sql = <R extends object>(text: string, params: unknown[] = []) => transportOf(memory).query<R>(text, params);
  const vectorsOf = (user: UserMemory) =>
    sql<{ category: string; key: string; content_hash: string; embedding: string }>(
      'select category, key, content_hash, embedding::text as embedding from public.memory_embeddings where user_id = $1 order by category, key',
      [user.user.id],
    );
  const handle = async (identity: string) => memory.forUser((await memory.startSession(identity)).user);

  beforeAll(async () => {
    await standin.start();
    dataDir = tempDataDir('embeddings');
    memory = await openMemory({
      env: {},
      dataDir,
      embeddedRole: 'owner',
      serve: false,
      embeddings: {
        model: 'standin-embed',
        baseURL: standin.baseURL,
        apiKey: 'test-key',
        retry: { minMs: 20, maxMs: 200 },
        onError: (error) => errors.push(error),
      },
    });
  });
  afterAll(async () => {
    await memory?.close();
    await standin.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('has vectors: pgvector enabled, memory_embeddings with RLS, reported by diagnostics and status', async () => {
    const status = await memory.embeddingStatus();
    expect(status.configured).toBe(true);
    expect(status.vectors?.available).toBe(true);
    const diagnostics = await memory.diagnostics();
    expect(diagnostics.vectors?.available).toBe(true);
    expect(diagnostics.rls.memory_embeddings).toBe(true);
  });

  it('embeds a stored memory in the background, and search fuses it with the lexical ranking', async () => {
    const alice = await handle('alice@example.com');
    await alice.store('PERSONAL', 'dentist_name', 'Hiroshi Yamaguchi');
    await alice.store('FACT', 'home_city', 'Lisbon');
    await memory.embeddingsSettled();
    const vectors = await vectorsOf(alice);
    expect(vectors.map((v) => v.key)).toEqual(['home_city', 'dentist_name']);
    // The request carried the memory's text and the model; the key as words.
    const inputs = standin.embeddingRequests().flatMap(embeddingInputs);
    expect(inputs).toContain('dentist name: Hiroshi Yamaguchi');
    expect((standin.embeddingRequests()[0]!.body as { model: string }).model).toBe('standin-embed');
    expect(standin.embeddingRequests()[0]!.headers.authorization).toBe('Bearer test-key');

    const query = 'my dentist Yamagucci';
    const [hybrid] = await alice.search(query, { limit: 3 });
    expect(hybrid?.key).toBe('dentist_name');
    const lexical = await sql<{ key: string; score: number }>(
      'select key, score from public.memory_search($1, $2, null, 3)',
      [alice.user.id, query],
    );
    expect(lexical[0]?.key).toBe('dentist_name');
    // Vector rank 1 adds 1/(60 + 1) to the lexical score.
    expect(hybrid!.score).toBeCloseTo(Number(lexical[0]!.score) + 1 / 61, 10);
  });

  it('a store does not wait for embedding: it returns while the embeddings request is still unanswered', async () => {
    const user = await handle('slow-embeddings@example.com');
    standin.embeddings.delayMs = 5_000;
    try {
      const receipt = await user.store('FACT', 'car', 'a green Volvo estate');
      expect(receipt).toMatchObject({ savedTo: 'database', applied: true });
      const request = await standin.waitFor(
        (r) => isEmbeddingRequest(r) && embeddingInputs(r).includes('car: a green Volvo estate'),
      );
      expect(request.finishedAt).toBeUndefined(); // the answer has not been sent yet
      expect(await user.retrieve('FACT', 'car')).toBe('a green Volvo estate');
      expect(await vectorsOf(user)).toEqual([]);
      // Found lexically meanwhile.
      expect((await user.search('Volvo')).map((m) => m.key)).toEqual(['car']);
    } finally {
      standin.embeddings.delayMs = 0;
    }
    await memory.embeddingsSettled();
    expect((await vectorsOf(user)).map((v) => v.key)).toEqual(['car']);
  });

  it('an embedding failure loses nothing and is retried with backoff until the vector is stored', async () => {
    const user = await handle('failing-embeddings@example.com');
    const failuresBefore = (await memory.embeddingStatus()).failures;
    standin.embeddings.failNext(3, 503);
    const requestsBefore = standin.embeddingRequests().length;
    await user.store('TASK', 'renew_passport', 'renew the passport before March');
    expect(await user.retrieve('TASK', 'renew_passport')).toBe('renew the passport before March');
    await memory.embeddingsSettled();
    expect((await vectorsOf(user)).map((v) => v.key)).toEqual(['renew_passport']);
    const status = await memory.embeddingStatus();
    expect(status.failures - failuresBefore).toBe(3);
    expect(standin.embeddingRequests().length - requestsBefore).toBeGreaterThanOrEqual(4);
    expect(status.lastError).toMatch(/^EMBEDDING_FAILED: .*HTTP 503/);
    expect(errors.some((e) => e.code === 'EMBEDDING_FAILED')).toBe(true);
  });

  it('refuses bad answers (wrong count, wrong dimension, NaN, zero vector): nothing is stored, and it is retried', async () => {
    const user = await handle('bad-answers@example.com');
    const tampers: Array<(a: { data: Array<{ index: number; embedding: unknown }> }) => unknown> = [
      (a) => ({ ...a, data: [...a.data, { index: a.data.length, embedding: [1] }] }),
      (a) => ({ ...a, data: a.data.map((d) => ({ ...d, embedding: [0.5, 0.5] })) }),
      (a) => ({ ...a, data: a.data.map((d) => ({ ...d, embedding: ['NaN', ...(d.embedding as number[]).slice(1)] })) }),
      (a) => ({ ...a, data: a.data.map((d) => ({ ...d, embedding: (d.embedding as number[]).map(() => 0) })) }),
    ];
    for (const [i, tamper] of tampers.entries()) {
      const before = (await memory.embeddingStatus()).failures;
      standin.embeddings.tamper = tamper;
      await user.store('FACT', `fact_${i}`, `fact number ${i}`);
      await until('a refused answer', async () => (await memory.embeddingStatus()).failures > before);
      // Checked while the stand-in still answers wrongly, so that no retry can have succeeded yet.
      const status = await memory.embeddingStatus();
      expect(status.lastError, `tamper ${i}`).toMatch(/^INVALID_EMBEDDING: /);
      expect(
        (await vectorsOf(user)).map((v) => v.key),
        `tamper ${i}`,
      ).not.toContain(`fact_${i}`);
      standin.embeddings.tamper = undefined;
      await memory.embeddingsSettled();
    }
    expect((await vectorsOf(user)).map((v) => v.key)).toEqual(['fact_0', 'fact_1', 'fact_2', 'fact_3']);
    // Every stored vector has the stand-in's dimension: a refused one never got in.
    const dims = await sql<{ dims: number }>(
      'select distinct extensions.vector_dims(embedding) as dims from public.memory_embeddings',
    );
    expect(dims).toEqual([{ dims: 256 }]);
  });

  it('re-embeds a changed value, and drops the vectors of forgotten memories and users', async () => {
    const user = await handle('changes@example.com');
    await user.store('PREFERENCE', 'favorite_color', 'blue');
    await user.store('FACT', 'pet', 'a cat called Miso');
    await memory.embeddingsSettled();
    const [before] = (await vectorsOf(user)).filter((v) => v.key === 'favorite_color');
    await user.store('PREFERENCE', 'favorite_color', 'teal green');
    await memory.embeddingsSettled();
    const [after] = (await vectorsOf(user)).filter((v) => v.key === 'favorite_color');
    expect(after!.content_hash).not.toBe(before!.content_hash);
    expect(after!.embedding).not.toBe(before!.embedding);
    const expected = standinEmbedding('favorite color: teal green');
    const stored = JSON.parse(after!.embedding) as number[];
    stored.forEach((x, i) => expect(x).toBeCloseTo(expected[i]!, 5));

    expect(await user.forget('FACT', 'pet')).toBe(true);
    expect((await vectorsOf(user)).map((v) => v.key)).toEqual(['favorite_color']);
    await user.forgetAll();
    expect(await vectorsOf(user)).toEqual([]);
  });

  it("vectors are per user: another user's, even with every word the same, never come back", async () => {
    const owners = ['iso-alice@example.com', 'iso-alice@example.com-2', 'iso-bob@example.com'];
    const handles: UserMemory[] = [];
    for (const identity of owners) {
      const h = await handle(identity);
      handles.push(h);
      await h.store('PERSONAL', 'dentist_name', `Doctor Hiroshi Yamaguchi of ${identity}`);
      await h.store('FACT', 'gym', `the gym on Rua Augusta of ${identity}`);
    }
    await memory.embeddingsSettled();
    for (const [i, h] of handles.entries()) {
      for (const query of ['dentist Hiroshi Yamaguchi', 'gym Augusta', `of ${owners[(i + 1) % 3]}`]) {
        const found = await h.search(query, { limit: 10 });
        for (const m of found) expect(m.value.endsWith(`of ${owners[i]}`), `${owners[i]}: ${m.value}`).toBe(true);
      }
      // The vector ranking alone, as the database answers it.
      const vector = `[${standinEmbedding('dentist Hiroshi Yamaguchi').join(',')}]`;
      const nearest = await sql<{ value: string }>(
        'select value from public.memory_embeddings_search($1, $2, $3, null, 100)',
        [h.user.id, 'standin-embed', vector],
      );
      expect(nearest).toHaveLength(2);
      for (const m of nearest) expect(m.value.endsWith(`of ${owners[i]}`)).toBe(true);
    }
  });

  it('an expired memory is not a vector match either (its own expiry, or the retention passed as an argument)', async () => {
    const user = await handle('vector-expiry@example.com');
    await user.store('PERSONAL', 'dentist_name', 'Doctor Hiroshi Yamaguchi', {
      expiresAt: new Date(Date.now() + 60_000),
    });
    await user.store('FACT', 'gym', 'the gym on Rua Augusta');
    await memory.embeddingsSettled();
    const vector = `[${standinEmbedding('dentist Hiroshi Yamaguchi').join(',')}]`;
    const nearest = (retentionDays: number | null) =>
      sql<{ key: string }>('select key from public.memory_embeddings_search($1, $2, $3, null, 100, $4)', [
        user.user.id,
        'standin-embed',
        vector,
        retentionDays,
      ]);
    expect((await nearest(null)).map((m) => m.key).sort()).toEqual(['dentist_name', 'gym']);
    await sql(
      "update public.memories set expires_at = now() - interval '1 millisecond' where user_id = $1 and key = 'dentist_name'",
      [user.user.id],
    );
    expect((await nearest(null)).map((m) => m.key)).toEqual(['gym']);
    expect((await user.search('dentist Hiroshi Yamaguchi')).map((m) => m.key)).not.toContain('dentist_name');
    await sql("update public.memories set updated_at = now() - interval '8 days' where user_id = $1 and key = 'gym'", [
      user.user.id,
    ]);
    expect((await nearest(7)).map((m) => m.key)).toEqual([]);
    expect((await nearest(9)).map((m) => m.key)).toEqual(['gym']);
  });

  it('falls back to the lexical ranking when the query cannot be embedded', async () => {
    const user = await handle('query-fails@example.com');
    await user.store('FACT', 'bank', 'Caixa Geral de Depositos');
    await memory.embeddingsSettled();
    standin.embeddings.failAll(500);
    try {
      const found = await user.search('Caixa Depositos', { limit: 5 });
      const lexical = await sql<{ key: string; score: number }>(
        'select key, score from public.memory_search($1, $2, null, 30)',
        [user.user.id, 'Caixa Depositos'],
      );
      expect(found.length).toBeGreaterThan(0);
      expect(found.map((m) => [m.key, m.score])).toEqual(lexical.slice(0, 5).map((r) => [r.key, Number(r.score)]));
    } finally {
      standin.embeddings.failNext(0);
    }
  });

  it('lk-memory doctor says vectors are available and used when MEMORY_EMBEDDING_MODEL is set', async () => {
    const env = {
      MEMORY_DATA_DIR: dataDir,
      MEMORY_EMBEDDING_MODEL: 'standin-embed',
      OPENAI_BASE_URL: standin.baseURL,
      LIVEKIT_URL: 'ws://127.0.0.1:1',
    };
    // The folder is owned by this test's store: the doctor needs it to itself.
    await memory.close();
    const result = await cli(['doctor'], env);
    expect(result.stdout).toMatch(
      /^ok\s+vectors\s+pgvector 0\.\d+\.\d+ available: memories are embedded with standin-embed into public\.memory_embeddings/m,
    );
    const without = await cli(['doctor'], { ...env, MEMORY_EMBEDDING_MODEL: '' });
    expect(without.stdout).toMatch(/^skip\s+vectors\s+pgvector .* available; embeddings are off/m);
  });
});

describe('embeddings on PostgreSQL without pgvector: everything stays lexical', () => {
  const standin = new ScriptedOpenAI();
  let db: TestDatabase;
  let memory: MemoryStore;

  beforeAll(async () => {
    await standin.start();
    db = await createTestDatabase('embeddings');
    memory = await openMemory({
      env: {},
      databaseUrl: db.url,
      dataDir: tempDataDir('embeddings-pg'),
      embeddings: { model: 'standin-embed', baseURL: standin.baseURL, apiKey: 'k' },
    });
  });
  afterAll(async () => {
    await memory?.close();
    await standin.stop();
    await db?.drop();
  });

  it('migrates without pgvector, has no vector table, and says why and how to get one', async () => {
    const tables = await transportOf(memory).query<{ t: string | null }>(
      "select to_regclass('public.memory_embeddings')::text as t",
    );
    expect(tables).toEqual([{ t: null }]);
    const status = await memory.embeddingStatus();
    expect(status.vectors?.available).toBe(false);
    expect(status.vectors?.reason).toMatch(/pgvector is not available on this database/);
    expect(status.vectors?.reason).toMatch(/pglite-pgvector/);
    expect((await memory.diagnostics()).vectors?.available).toBe(false);
  });

  it('stores and searches lexically, and embeds nothing', async () => {
    const user = memory.forUser((await memory.startSession('lexical@example.com')).user);
    await user.store('PERSONAL', 'dentist_name', 'Hiroshi Yamaguchi');
    await memory.embeddingsSettled();
    const found = await user.search('dentist Yamagucci', { limit: 5 });
    expect(found.map((m) => m.key)).toEqual(['dentist_name']);
    const lexical = await transportOf(memory).query<{ score: number }>(
      'select score from public.memory_search($1, $2, null, 30)',
      [user.user.id, 'dentist Yamagucci'],
    );
    expect(found[0]!.score).toBe(Number(lexical[0]!.score));
    expect(standin.embeddingRequests()).toEqual([]);
  });

  it('lk-memory doctor warns that MEMORY_EMBEDDING_MODEL is set but search stays lexical, and how to get pgvector', async () => {
    const env = {
      DATABASE_URL: db.url,
      MEMORY_EMBEDDING_MODEL: 'standin-embed',
      OPENAI_BASE_URL: standin.baseURL,
      LIVEKIT_URL: 'ws://127.0.0.1:1',
    };
    const result = await cli(['doctor'], env);
    expect(result.stdout).toMatch(
      /^warn\s+vectors\s+MEMORY_EMBEDDING_MODEL=standin-embed is set but vectors are not available, so search stays lexical: pgvector is not available on this database\. Supabase: enable the "vector" extension/m,
    );
    const noKey = await cli(['doctor'], {
      DATABASE_URL: db.url,
      MEMORY_EMBEDDING_MODEL: 'm',
      LIVEKIT_URL: 'ws://127.0.0.1:1',
    });
    expect(noKey.stdout).toMatch(
      /^FAIL\s+vectors\s+MEMORY_EMBEDDING_MODEL=m is set but neither OPENAI_API_KEY nor OPENAI_BASE_URL/m,
    );
  });

  it('refuses MEMORY_EMBEDDING_MODEL without a key for OpenAI itself (INVALID_CONFIG), before opening anything', async () => {
    const error = await openMemory({
      env: { MEMORY_EMBEDDING_MODEL: 'text-embedding-3-small' },
      databaseUrl: db.url,
    }).then(
      (m) => m.close().then(() => undefined),
      (e: unknown) => e,
    );
    expect(isMemoryError(error, 'INVALID_CONFIG')).toBe(true);
  });
});
