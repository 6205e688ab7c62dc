/**
 * `npm run capacity -- --nodes 1 --workers 1 --memory on`: the largest number of calls at once that
 * the stack carries with join-to-greeting p95 under a limit (default 2,000 ms) and no errors. Runs
 * `npm run load` (runLoad) at rising concurrency, each level on a fresh stack, and stops at the
 * first level that misses. Each session holds its call for --hold-sec after its turns, and calls
 * arrive spread over --ramp-sec, so the figure is about calls in progress, not a burst of joins.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { intOption, parseScriptArgs } from './lib/cli-args.js';
import { runMain } from './livekit/main.js';
import type { LoadResult } from './load.js';

const LOAD_SCRIPT = fileURLToPath(new URL(`./load${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url));

/**
 * One level as its own `npm run load` process: rtc-node's native clients are released at the end of
 * a run and cannot be used again in the same process, and each level gets a clean process.
 */
async function loadRun(args: string[]): Promise<LoadResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lkm-capacity-'));
  const json = path.join(dir, 'load.json');
  try {
    const child = spawn(process.execPath, [...process.execArgv, LOAD_SCRIPT, ...args, '--json', json], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr.on('data', (chunk: Buffer) => process.stderr.write(chunk.toString().replace(/^(?=.)/gm, '  ')));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    // Exit 1 is a run with errors or cross-user reads: its JSON says which; no JSON is a failure.
    if (!fs.existsSync(json)) throw new Error(`the load run exited with ${code} and wrote no result`);
    const result = JSON.parse(fs.readFileSync(json, 'utf8')) as LoadResult;
    if (typeof result?.errors !== 'number' || typeof result?.joinToGreetingMs !== 'object')
      throw new Error('the load run wrote a result without errors and joinToGreetingMs');
    return result;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const HELP = `Usage: npm run capacity -- [options]

Runs load runs at rising concurrency (each on a fresh stack: livekit-server nodes on Redis, workers,
PgBouncer, the scripted model) and reports the largest concurrency whose join-to-greeting p95 stays
under the limit with no error and no cross-user read. Progress on stderr, a table on stdout.

  --nodes <n>            livekit-server nodes (default 1)
  --workers <n>          workers (default 1)
  --memory on|off        the workers' MEMORY (default on)
  --levels <a,b,...>     concurrency levels to try, rising (default 2,4,6,8,10,12)
  --sessions-per-level <k>  sessions per level, as a multiple of the concurrency (default 2)
  --hold-sec <n>         seconds each call stays after its turns (default 30)
  --ramp-sec <n>         the first calls arrive spread over this many seconds (default 30)
  --voice-share <0-1>    share of voice calls (default 0.25)
  --p95-limit-ms <n>     join-to-greeting p95 limit (default 2000)
  --json <file>          write every level's figures as JSON
  --logs <dir>           write each level's worker logs to <dir>/level-<n>/
  -h, --help             this text
`;

export interface CapacityLevel {
  concurrency: number;
  ok: boolean;
  sessions: number;
  completed: number;
  errors: number;
  crossUserReads: number;
  joinToGreetingMs: LoadResult['joinToGreetingMs'];
  turnMs: LoadResult['turnMs']['all'];
  jobPeakRssMb: number | null;
  workerCpuPercent: number | null;
}

function levelOf(concurrency: number, result: LoadResult, limitMs: number): CapacityLevel {
  const p95 = result.joinToGreetingMs.p95;
  const ok = result.errors === 0 && result.crossUserReads === 0 && p95 !== null && p95 < limitMs;
  const cpuSec =
    result.workerProcesses.processes.reduce((sum, p) => sum + p.cpuSecDuringRun, 0) / Math.max(1, result.durationSec);
  return {
    concurrency,
    ok,
    sessions: result.sessions.started,
    completed: result.sessions.completed,
    errors: result.errors,
    crossUserReads: result.crossUserReads,
    joinToGreetingMs: result.joinToGreetingMs,
    turnMs: result.turnMs.all,
    jobPeakRssMb: result.workerProcesses.jobProcesses.peakRssMb.max,
    workerCpuPercent: Math.round(cpuSec * 100),
  };
}

export async function main(argv: string[]): Promise<number> {
  const values = parseScriptArgs(
    {
      args: argv,
      options: {
        nodes: { type: 'string' },
        workers: { type: 'string' },
        memory: { type: 'string' },
        levels: { type: 'string' },
        'sessions-per-level': { type: 'string' },
        'hold-sec': { type: 'string' },
        'ramp-sec': { type: 'string' },
        'voice-share': { type: 'string' },
        'p95-limit-ms': { type: 'string' },
        json: { type: 'string' },
        logs: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    },
    HELP,
  );
  if (typeof values === 'number') return values;
  const int = intOption;
  let settings;
  try {
    if (values.memory !== undefined && values.memory !== 'on' && values.memory !== 'off')
      throw new Error(`--memory must be on or off, not ${values.memory}`);
    const memory: 'on' | 'off' = values.memory === 'off' ? 'off' : 'on';
    const voiceShare = values['voice-share'] === undefined ? 0.25 : Number(values['voice-share']);
    if (!Number.isFinite(voiceShare) || voiceShare < 0 || voiceShare > 1)
      throw new Error(`--voice-share must be a number from 0 to 1, not ${values['voice-share']}`);
    const levels = (values.levels ?? '2,4,6,8,10,12').split(',').map((l) => int(l.trim(), 'levels', 0, 1, 1000));
    if (levels.some((l, i) => i > 0 && l <= levels[i - 1]!)) throw new Error('--levels must rise, as 2,4,6');
    settings = {
      nodes: int(values.nodes, 'nodes', 1, 1, 15),
      workers: int(values.workers, 'workers', 1, 1, 16),
      memory,
      levels,
      perLevel: int(values['sessions-per-level'], 'sessions-per-level', 2, 1, 100),
      holdSec: int(values['hold-sec'], 'hold-sec', 30, 0, 3600),
      rampSec: int(values['ramp-sec'], 'ramp-sec', 30, 0, 3600),
      voiceShare,
      limitMs: int(values['p95-limit-ms'], 'p95-limit-ms', 2000, 1, 600_000),
    };
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    return 2;
  }
  const results: CapacityLevel[] = [];
  let capacity = 0;
  for (const concurrency of settings.levels) {
    process.stderr.write(
      `[capacity] ${concurrency} calls at once (${settings.nodes} node(s), ${settings.workers} worker(s), memory ${settings.memory})...\n`,
    );
    const result = await loadRun([
      '--sessions',
      String(concurrency * settings.perLevel),
      '--concurrency',
      String(concurrency),
      '--voice-share',
      String(settings.voiceShare),
      '--nodes',
      String(settings.nodes),
      '--workers',
      String(settings.workers),
      '--memory',
      settings.memory,
      '--hold-sec',
      String(settings.holdSec),
      '--ramp-sec',
      String(settings.rampSec),
      ...(values.logs ? ['--logs', path.join(values.logs, `level-${concurrency}`)] : []),
    ]);
    const level = levelOf(concurrency, result, settings.limitMs);
    results.push(level);
    process.stderr.write(
      `[capacity] ${concurrency}: ${level.ok ? 'carried' : 'missed'} (join to greeting p95 ${level.joinToGreetingMs.p95} ms, errors ${level.errors})\n`,
    );
    if (!level.ok) break;
    capacity = concurrency;
  }
  const lines = [
    `| calls at once | sessions | completed | errors | cross-user | join→greeting p50 / p95 ms | turn p50 / p95 ms | job RSS max MB | worker CPU % |`,
    `|---|---|---|---|---|---|---|---|---|`,
    ...results.map(
      (l) =>
        `| ${l.concurrency} | ${l.sessions} | ${l.completed} | ${l.errors} | ${l.crossUserReads} | ${l.joinToGreetingMs.p50} / ${l.joinToGreetingMs.p95} | ${l.turnMs.p50} / ${l.turnMs.p95} | ${l.jobPeakRssMb} | ${l.workerCpuPercent} |`,
    ),
    '',
    `capacity: ${capacity} calls at once (${settings.nodes} node(s), ${settings.workers} worker(s), memory ${settings.memory}, p95 limit ${settings.limitMs} ms, hold ${settings.holdSec} s, voice share ${settings.voiceShare})`,
    '',
  ];
  process.stdout.write(lines.join('\n'));
  if (values.json)
    fs.writeFileSync(values.json, `${JSON.stringify({ settings, capacity, levels: results }, null, 2)}\n`);
  return 0;
}

runMain(import.meta.url, main);
