import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openMemory, type UserMemory } from '../../memory/index.js';
import { ScriptedOpenAI } from '../../test/support/openai-standin.js';
import type { FixtureMemory, FixtureQuery } from '../make-search-fixtures.js';

const DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures', 'search');

/** The committed data set (scripts/make-search-fixtures.ts writes it). */
export function loadSearchFixtures(): { memories: FixtureMemory[]; queries: FixtureQuery[] } {
  return {
    memories: JSON.parse(fs.readFileSync(path.join(DIR, 'memories.json'), 'utf8')) as FixtureMemory[],
    queries: JSON.parse(fs.readFileSync(path.join(DIR, 'queries.json'), 'utf8')) as FixtureQuery[],
  };
}

export interface RecallReport {
  /** Share of queries whose expected memory is among the first k results. */
  recall: number;
  byKind: Record<string, { queries: number; recall: number }>;
  misses: Array<{ query: string; kind: string; expected: string; got: string[] }>;
}

/** recall@k of a user's search over the queries (the user must hold the fixture's memories). */
export async function measureRecall(handle: UserMemory, queries: FixtureQuery[], k = 5): Promise<RecallReport> {
  const byKind: Record<string, { queries: number; hits: number }> = {};
  const misses: RecallReport['misses'] = [];
  let hits = 0;
  for (const q of queries) {
    const found = await handle.search(q.query, { limit: k });
    const hit = found.some((m) => m.category === q.expected.category && m.key === q.expected.key);
    const kind = (byKind[q.kind] ??= { queries: 0, hits: 0 });
    kind.queries += 1;
    if (hit) {
      hits += 1;
      kind.hits += 1;
    } else {
      misses.push({
        query: q.query,
        kind: q.kind,
        expected: `${q.expected.category}/${q.expected.key}`,
        got: found.map((m) => m.key),
      });
    }
  }
  return {
    recall: hits / queries.length,
    byKind: Object.fromEntries(
      Object.entries(byKind).map(([kind, v]) => [kind, { queries: v.queries, recall: v.hits / v.queries }]),
    ),
    misses,
  };
}

/** Store the fixture's memories for one user, in batches of storeMany. */
export async function importFixtures(handle: UserMemory, memories: FixtureMemory[]): Promise<void> {
  for (let i = 0; i < memories.length; i += 1000) await handle.storeMany(memories.slice(i, i + 1000));
}

/**
 * recall@k of the same data set searched lexically and hybrid (the stand-in's deterministic
 * embeddings fused with the lexical ranking), on a fresh embedded database in `dataDir` (PGlite
 * with pgvector). The same memories and queries; the lexical run reopens the folder without
 * embeddings.
 */
export async function compareHybridRecall(
  dataDir: string,
  k = 5,
): Promise<{ lexical: RecallReport; hybrid: RecallReport; embedded: number }> {
  const { memories, queries } = loadSearchFixtures();
  const standin = new ScriptedOpenAI();
  await standin.start();
  try {
    const open = (embeddings: boolean) =>
      openMemory({
        env: {},
        dataDir,
        embeddedRole: 'owner',
        serve: false,
        embeddings: embeddings
          ? { model: 'standin-embed', baseURL: standin.baseURL, apiKey: 'none', batchSize: 128 }
          : false,
      });
    let memory = await open(true);
    let hybrid: RecallReport;
    let embedded: number;
    try {
      const user = memory.forUser((await memory.startSession('quality-hybrid@example.com')).user);
      await importFixtures(user, memories);
      await memory.embeddingsSettled();
      const status = await memory.embeddingStatus();
      if (!status.vectors?.available) throw new Error(`no vectors on the embedded database: ${status.vectors?.reason}`);
      embedded = status.embedded;
      hybrid = await measureRecall(user, queries, k);
    } finally {
      await memory.close();
    }
    memory = await open(false);
    try {
      const user = memory.forIdentity('quality-hybrid@example.com');
      return { lexical: await measureRecall(user, queries, k), hybrid, embedded };
    } finally {
      await memory.close();
    }
  } finally {
    await standin.stop();
  }
}
