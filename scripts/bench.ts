/**
 * npm run bench [-- --help]: the DESIGN.md targets, measured. Timings live here, never in tests.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { PostgresStore } from '@langchain/langgraph-checkpoint-postgres/store';
import pg from 'pg';
import { openMemory, type GroupCommit, type MemoryStore, type UserMemory } from '../memory/index.js';
import { transportOf } from '../memory/store.js';
import { benchSearch } from './bench/search.js';

const HELP = `Usage: npm run bench [-- options]

Measures the memory layer against the targets in DESIGN.md and prints a table:
session start latency and round trips, store/retrieve latency, throughput side by side with
LangGraph's PostgresStore on the same PostgreSQL, a user with 100,000 memories against one with
10, 1,000 sessions starting at once, and search (latency by memory count, recall@5, per-turn
recall).

With --voice it measures voice turns instead (see below).

Options:
  --iterations <n>    sequential operations per latency figure (default 2000)
  --backends <list>   comma-separated: postgres, embedded, embedded-socket (default: all three)
  --database-url <u>  PostgreSQL server to create a scratch database on
                      (default: $DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres)
  --only <section>    core (the figures above), search (search p50/p95 at 10, 1,000 and
                      10,000 memories with 100 other users, recall@5, per-turn recall), or
                      throughput (only put/get ops/s with 8 callers, ours against LangGraph's
                      PostgresStore, alternating); default: core and search
  --rounds <n>        rounds of the put/get throughput comparison (default 5)
  --group-commit <s[,r]>  store calls (and read calls) in flight per process before
                      more are combined into one call (openMemory's groupCommit,
                      default 1,2), or off
  --json <file>       also write the results as JSON
  -h, --help          this text

Voice (--voice): a real livekit-server, two workers (MEMORY=on and MEMORY=off, otherwise the
same), the scripted stand-ins for the model, transcription and speech (instant), and a real
caller speaking the test/fixtures/audio WAV files in real time. For each turn: end of the
caller's speech to the agent's first audible frame, split into transcription, end-of-turn wait,
model, memory and speech; p50/p95 per part, memory on next to memory off.
  --voice             run the voice benchmark
  --turns <n>         turns per column and STT path (default 24, at least 20 for the README table)
  --stt <list>        realtime, http or both, comma-separated (default realtime,http)
  Worker settings to try come from the environment, e.g.
    ENDPOINTING_MIN_DELAY_MS=200 VAD_MIN_SILENCE_MS=250 npm run bench -- --voice
`;

const { values: args } = parseArgs({
  options: {
    iterations: { type: 'string', default: '2000' },
    backends: { type: 'string', default: 'postgres,embedded,embedded-socket' },
    'database-url': { type: 'string' },
    json: { type: 'string' },
    voice: { type: 'boolean' },
    turns: { type: 'string', default: '24' },
    stt: { type: 'string', default: 'realtime,http' },
    only: { type: 'string' },
    rounds: { type: 'string', default: '5' },
    'group-commit': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (args.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
if (args.voice) {
  const turns = Number(args.turns);
  const stt = args.stt.split(',').map((s) => s.trim());
  if (!Number.isInteger(turns) || turns < 1) {
    process.stderr.write('bench: --turns must be a whole number of at least 1\n');
    process.exit(2);
  }
  if (stt.length === 0 || stt.some((s) => s !== 'realtime' && s !== 'http')) {
    process.stderr.write(`bench: --stt takes realtime, http or both (comma-separated), not ${args.stt}\n`);
    process.exit(2);
  }
  // rtc-node logs at debug level unless NODE_ENV is production, read when it is first loaded.
  process.env.NODE_ENV = 'production';
  const { runVoiceBench, formatVoiceTable } = await import('./bench/voice.js');
  const settingNames = /^(VAD_|ENDPOINTING_|INTERRUPTION|STT_|TTS_|MEMORY_)/;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => settingNames.test(k)));
  const result = await runVoiceBench({
    turns,
    stt: stt as Array<'realtime' | 'http'>,
    env,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  process.stdout.write(
    `\n${os.cpus().length} x ${cpu}, Node ${process.version}, worker settings ${JSON.stringify(env)}\n\n`,
  );
  process.stdout.write(formatVoiceTable(result));
  if (args.json) fs.writeFileSync(args.json, JSON.stringify(result, null, 2));
  process.exit(0);
}
const ITERATIONS = Number(args.iterations);
if (!Number.isInteger(ITERATIONS) || ITERATIONS < 10) {
  process.stderr.write('bench: --iterations must be a whole number of at least 10\n');
  process.exit(2);
}
const SECTIONS = args.only ? [args.only] : ['core', 'search'];
if (SECTIONS.some((s) => s !== 'core' && s !== 'search' && s !== 'throughput')) {
  process.stderr.write('bench: --only must be core, search or throughput\n');
  process.exit(2);
}
const ROUNDS = Number(args.rounds);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) {
  process.stderr.write('bench: --rounds must be a whole number of at least 1\n');
  process.exit(2);
}
const GROUP_COMMIT = parseGroupCommit(args['group-commit']);
function parseGroupCommit(text: string | undefined): Partial<GroupCommit> | false | undefined {
  if (text === undefined) return undefined;
  if (text === 'off') return false;
  const [stores, reads, ...rest] = text.split(',').map(Number);
  const ok = (n: number | undefined) => n === undefined || (Number.isInteger(n) && n >= 1 && n <= 1000);
  if (rest.length > 0 || !ok(stores) || !ok(reads)) {
    process.stderr.write(
      `bench: --group-commit takes "off", or store calls in flight and optionally read calls in flight (e.g. 1 or 1,2), not ${text}\n`,
    );
    process.exit(2);
  }
  return { storesInFlight: stores, ...(reads === undefined ? {} : { readsInFlight: reads }) };
}
const ADMIN_URL = args['database-url'] ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const log = (line: string) => process.stderr.write(`${line}\n`);

interface Stats {
  p50: number;
  p95: number;
  p99: number;
  mean: number;
}

function stats(samples: number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99), mean: samples.reduce((a, b) => a + b, 0) / samples.length };
}

async function timeEach(count: number, op: (i: number) => Promise<unknown>): Promise<Stats> {
  for (let i = 0; i < Math.min(100, count); i += 1) await op(-1 - i); // warm-up
  const samples: number[] = [];
  for (let i = 0; i < count; i += 1) {
    const start = performance.now();
    await op(i);
    samples.push(performance.now() - start);
  }
  return stats(samples);
}

/** Operations per second with `concurrency` callers, `total` operations in all. */
async function throughput(total: number, concurrency: number, op: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await op(next++);
    }),
  );
  return total / ((performance.now() - start) / 1000);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function rounds(count: number, fn: () => Promise<number>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i += 1) out.push(await fn());
  return out;
}

async function scratchDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `lkm_bench_${process.pid}`;
  const admin = async (sql: string) => {
    const client = new pg.Client({ connectionString: ADMIN_URL });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await admin(`drop database if exists ${name} with (force)`);
  await admin(`create database ${name}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`drop database if exists ${name} with (force)`) };
}

type Row = Record<string, string | number>;
const results: Record<string, Row> = {};
const fmt = (ms: number) => ms.toFixed(3);

/**
 * Put/get throughput with 8 callers: half stores, half retrieves of 1,000 keys of one user. With a
 * PostgreSQL URL, LangGraph's PostgresStore does the same on the same database, the two
 * alternating round by round so that both see the same machine load (this box's noise is large).
 */
async function benchThroughput(row: Row, alice: UserMemory, langgraphUrl?: string): Promise<void> {
  const mixed = (i: number) =>
    i % 2 ? alice.store('TASK', `t-${i % 1000}`, `v${i}`) : alice.retrieve('TASK', `t-${i % 1000}`);
  const label = `put/get ops/s (8 callers, median of ${ROUNDS})`;
  if (!langgraphUrl) {
    row[label] = Math.round(median(await rounds(ROUNDS, () => throughput(ITERATIONS * 2, 8, mixed))));
    return;
  }
  log(`LangGraph PostgresStore on the same database, alternating with ours (${ROUNDS} rounds)...`);
  const lg = new PostgresStore({ connectionOptions: { connectionString: langgraphUrl, max: 10 } });
  await lg.setup();
  const ns = ['users', alice.user.id, 'PREFERENCE'];
  const put = await timeEach(ITERATIONS, (i) => lg.put(ns, `key-${i % 500}`, { value: `value ${i}` }));
  const get = await timeEach(ITERATIONS, (i) => lg.get(ns, `key-${Math.abs(i) % 500}`));
  const lgNs = ['users', alice.user.id, 'TASK'];
  const lgMixed = (i: number) =>
    i % 2 ? lg.put(lgNs, `t-${i % 1000}`, { value: `v${i}` }) : lg.get(lgNs, `t-${i % 1000}`);
  // Warm both (connections, plans) before the first measured round.
  await throughput(400, 8, mixed);
  await throughput(400, 8, lgMixed);
  const ours: number[] = [];
  const theirs: number[] = [];
  for (let round = 0; round < ROUNDS; round += 1) {
    ours.push(await throughput(ITERATIONS * 2, 8, mixed));
    theirs.push(await throughput(ITERATIONS * 2, 8, lgMixed));
    log(`  round ${round + 1}: ours ${Math.round(ours.at(-1)!)}, LangGraph ${Math.round(theirs.at(-1)!)} ops/s`);
  }
  await lg.stop();
  row[label] = Math.round(median(ours));
  row['put/get vs LangGraph (median of per-round ratios)'] = median(ours.map((o, i) => o / theirs[i]!)).toFixed(2);
  results['langgraph PostgresStore'] = {
    'store p50 ms': fmt(put.p50),
    'store p99 ms': fmt(put.p99),
    'retrieve p50 ms': fmt(get.p50),
    'retrieve p99 ms': fmt(get.p99),
    [label]: Math.round(median(theirs)),
  };
}

async function benchStore(name: string, memory: MemoryStore, langgraphUrl?: string): Promise<void> {
  log(`\n[${name}] ${memory.backend.location}`);
  const row: Row = {};
  results[name] = row;
  if (SECTIONS.includes('search') && name !== 'embedded-socket')
    Object.assign(row, await benchSearch(name, memory, log));
  if (!SECTIONS.includes('core') && !SECTIONS.includes('throughput')) return;
  const alice = memory.forUser((await memory.startSession('bench-alice@example.com')).user);
  if (!SECTIONS.includes('core')) {
    await benchThroughput(row, alice, langgraphUrl);
    return;
  }
  for (let i = 0; i < 10; i += 1) await alice.store('FACT', `fact-${i}`, `value ${i}`);

  log(`[${name}] session start x${ITERATIONS}...`);
  const statementsBefore = memory.statementCount;
  const session = await timeEach(ITERATIONS, () => memory.startSession('bench-alice@example.com', { memoryLimit: 20 }));
  const sessionCalls = ITERATIONS + Math.min(100, ITERATIONS);
  row['session start p50 ms'] = fmt(session.p50);
  row['session start p99 ms'] = fmt(session.p99);
  row['statements per session start'] = (memory.statementCount - statementsBefore) / sessionCalls;

  log(`[${name}] store and retrieve x${ITERATIONS}...`);
  const store = await timeEach(ITERATIONS, (i) => alice.store('PREFERENCE', `key-${i % 500}`, `value ${i}`));
  const retrieve = await timeEach(ITERATIONS, (i) => alice.retrieve('PREFERENCE', `key-${Math.abs(i) % 500}`));
  row['store p50 ms'] = fmt(store.p50);
  row['store p99 ms'] = fmt(store.p99);
  row['retrieve p50 ms'] = fmt(retrieve.p50);
  row['retrieve p99 ms'] = fmt(retrieve.p99);

  await benchThroughput(row, alice, langgraphUrl);

  log(`[${name}] a user with 100,000 memories against one with 10...`);
  const heavy = memory.forUser((await memory.startSession('bench-heavy@example.com')).user);
  // Ten statements of 10,000 (set-up, not measured): one of 100,000 keeps the search indexes busy
  // for about the client's 5 s statement timeout on this loaded machine.
  for (let from = 1; from <= 100_000; from += 10_000) {
    await transportOf(memory).query(
      `insert into public.memories (user_id, category, key, value)
       select $1, 'FACT', 'k' || g, 'value ' || g from generate_series($2::int, $2::int + 9999) g`,
      [heavy.user.id, from],
    );
  }
  const light = await timeEach(Math.min(ITERATIONS, 1000), () =>
    memory.startSession('bench-alice@example.com', { memoryLimit: 20 }),
  );
  const big = await timeEach(Math.min(ITERATIONS, 1000), () =>
    memory.startSession('bench-heavy@example.com', { memoryLimit: 20 }),
  );
  row['100k-memory session start p50 ms'] = fmt(big.p50);
  row['100k vs 10 memories (p50 ratio)'] = (big.p50 / light.p50).toFixed(2);

  log(`[${name}] 1,000 sessions at once (100 of them one identity)...`);
  const identities = Array.from({ length: 1000 }, (_, i) =>
    i < 100 ? 'bench-crowd-same@example.com' : `bench-crowd-${i}@example.com`,
  );
  const start = performance.now();
  const settled = await Promise.allSettled(
    identities.map((identity) => memory.startSession(identity, { memoryLimit: 5 })),
  );
  row['1,000 concurrent sessions ms'] = Math.round(performance.now() - start);
  const failures = settled.filter((s) => s.status === 'rejected').length;
  const wrongUser = settled.filter(
    (s, i) => s.status === 'fulfilled' && s.value.user.identity !== identities[i],
  ).length;
  const sameRows = await transportOf(memory).query<{ n: number }>(
    "select count(*)::int as n from public.memory_users where identity = 'bench-crowd-same@example.com'",
  );
  const firsts = settled.filter((s, i) => i < 100 && s.status === 'fulfilled' && s.value.firstSession).length;
  row['1,000 sessions: errors / wrong user / rows for the shared identity / first sessions'] =
    `${failures} / ${wrongUser} / ${sameRows[0]!.n} / ${firsts}`;
}

const backends = args.backends.split(',').map((b) => b.trim());
const cleanups: Array<() => Promise<void>> = [];
try {
  for (const backend of backends) {
    if (backend === 'postgres') {
      const db = await scratchDatabase();
      cleanups.push(db.drop);
      const memory = await openMemory({ env: {}, databaseUrl: db.url, groupCommit: GROUP_COMMIT });
      await benchStore('postgres', memory, db.url);
      await memory.close();
    } else if (backend === 'embedded' || backend === 'embedded-socket') {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lkm-bench-'));
      cleanups.push(() => Promise.resolve(fs.rmSync(dir, { recursive: true, force: true })));
      const owner = await openMemory({
        env: {},
        dataDir: dir,
        embeddedRole: 'owner',
        serve: backend === 'embedded-socket',
        groupCommit: GROUP_COMMIT,
      });
      const memory =
        backend === 'embedded'
          ? owner
          : await openMemory({ env: {}, dataDir: dir, embeddedRole: 'client', groupCommit: GROUP_COMMIT });
      await benchStore(backend, memory);
      if (memory !== owner) await memory.close();
      await owner.close();
    } else {
      process.stderr.write(`bench: unknown backend ${backend} (use postgres, embedded, embedded-socket)\n`);
      process.exit(2);
    }
  }
} finally {
  for (const cleanup of cleanups) await cleanup().catch(() => {});
}

const columns = Object.keys(results);
const metrics = [...new Set(columns.flatMap((c) => Object.keys(results[c]!)))];
const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
process.stdout.write(`\n${os.cpus().length} x ${cpu}, Node ${process.version}, ${ITERATIONS} iterations\n\n`);
process.stdout.write(`| metric | ${columns.join(' | ')} |\n|---|${columns.map(() => '---').join('|')}|\n`);
for (const metric of metrics) {
  process.stdout.write(`| ${metric} | ${columns.map((c) => String(results[c]![metric] ?? '')).join(' | ')} |\n`);
}
if (args.json) fs.writeFileSync(args.json, JSON.stringify({ iterations: ITERATIONS, cpu, results }, null, 2));
