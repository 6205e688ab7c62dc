/**
 * The search section of `npm run bench`: search p50/p95 for one user holding 10, 1,000 and 10,000
 * memories while 100 other users hold 100 each, recall@5 on the committed data set, and what
 * per-turn recall adds to a turn. Timings live here, never in tests.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { MemoryStore, UserMemory } from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import { recallMemoriesForTurn } from '../../plugins/recall.js';
import { buildSearchFixtures } from '../make-search-fixtures.js';
import { compareHybridRecall, measureRecall } from '../lib/search-quality.js';

type Row = Record<string, string | number>;

function percentile(samples: number[], q: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Insert memories for a user in one statement per 2,000 (the bench's set-up, not what it measures). */
async function bulkInsert(
  memory: MemoryStore,
  userId: string,
  rows: Array<{ category: string; key: string; value: string }>,
) {
  for (let i = 0; i < rows.length; i += 2000) {
    await transportOf(memory).query(
      `insert into public.memories (user_id, category, key, value)
       select $1, r.category, r.key, r.value from json_to_recordset($2::json) as r(category text, key text, value text)`,
      [userId, JSON.stringify(rows.slice(i, i + 2000))],
    );
  }
  await transportOf(memory).query('analyze public.memories');
}

/** `count` memories: the data set's first ones, then variations of its distractors with fresh keys. */
function memoriesOf(count: number): Array<{ category: string; key: string; value: string }> {
  const { memories } = buildSearchFixtures();
  const out = memories.slice(0, count);
  for (let i = 0; out.length < count; i += 1) {
    const m = memories[100 + (i % (memories.length - 100))]!;
    out.push({ category: m.category, key: `${m.key}_v${i}`, value: `${m.value} (${i})` });
  }
  return out;
}

async function timeSearches(handle: UserMemory, queries: string[], rounds: number): Promise<number[]> {
  for (const q of queries.slice(0, 20)) await handle.search(q, { limit: 5 }); // warm-up
  const samples: number[] = [];
  for (let r = 0; r < rounds; r += 1) {
    for (const q of queries) {
      const start = performance.now();
      await handle.search(q, { limit: 5 });
      samples.push(performance.now() - start);
    }
  }
  return samples;
}

export async function benchSearch(name: string, memory: MemoryStore, log: (line: string) => void): Promise<Row> {
  const row: Row = {};
  const { queries } = buildSearchFixtures();
  const texts = queries.map((q) => q.query);
  log(`[${name}] search: 100 other users with 100 memories each...`);
  const others = memoriesOf(100);
  for (let u = 0; u < 100; u += 1) {
    const user = await memory.provision(`bench-search-other-${u}@example.com`);
    await bulkInsert(memory, user.id, others);
  }
  for (const size of [10, 1000, 10_000]) {
    log(`[${name}] search: one user with ${size.toLocaleString('en')} memories...`);
    const user = memory.forUser(await memory.provision(`bench-search-${size}@example.com`));
    await bulkInsert(memory, user.user.id, memoriesOf(size));
    const samples = await timeSearches(user, texts, size === 10_000 ? 3 : 2);
    row[`search p50 ms (${size.toLocaleString('en')} memories)`] = percentile(samples, 0.5).toFixed(2);
    row[`search p95 ms (${size.toLocaleString('en')} memories)`] = percentile(samples, 0.95).toFixed(2);
    if (size === 10_000) {
      // What per-turn recall adds to a turn: the whole helper (search + rendering), on sentences.
      const sentences = queries.filter((q) => q.kind === 'word-form').map((q) => q.query);
      const added: number[] = [];
      let late = 0;
      for (let r = 0; r < 3; r += 1) {
        for (const s of sentences) {
          const outcome = await recallMemoriesForTurn(user, s, { budgetMs: 50 });
          added.push(outcome.elapsedMs);
          if (outcome.status === 'late') late += 1;
        }
      }
      row['per-turn recall added p50 / p95 ms (10,000 memories, budget 50)'] =
        `${percentile(added, 0.5).toFixed(2)} / ${percentile(added, 0.95).toFixed(2)} (${late} of ${added.length} late)`;
    }
  }
  log(`[${name}] search: recall@5 on the data set...`);
  const { memories } = buildSearchFixtures();
  const quality = memory.forUser(await memory.provision('bench-search-quality@example.com'));
  for (let i = 0; i < memories.length; i += 1000) await quality.storeMany(memories.slice(i, i + 1000));
  const report = await measureRecall(quality, queries);
  row['recall@5 lexical (155 queries, 1,100 memories)'] = report.recall.toFixed(3);
  row['recall@5 by kind'] = Object.entries(report.byKind)
    .map(([kind, v]) => `${kind} ${v.recall.toFixed(2)}`)
    .join(', ');
  // Hybrid: the stand-in's deterministic embeddings fused with the lexical ranking, where vectors
  // exist. The embedded database has them (PGlite's pgvector): a fresh folder, same data set.
  const vectors = (await memory.diagnostics()).vectors;
  if (name === 'embedded') {
    log(`[${name}] search: recall@5 hybrid (stand-in embeddings) on the data set...`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lkm-bench-hybrid-'));
    try {
      const { lexical, hybrid } = await compareHybridRecall(dir);
      row['recall@5 hybrid, stand-in embeddings (lexical on the same database)'] =
        `${hybrid.recall.toFixed(3)} (${lexical.recall.toFixed(3)})`;
      row['recall@5 hybrid by kind'] = Object.entries(hybrid.byKind)
        .map(([kind, v]) => `${kind} ${v.recall.toFixed(2)}`)
        .join(', ');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  } else {
    row['recall@5 hybrid, stand-in embeddings (lexical on the same database)'] = vectors?.available
      ? 'see embedded'
      : 'n/a: no pgvector here';
  }
  return row;
}
