/**
 * `npm run load -- --sessions N --concurrency C --voice-share P --returning-share R`: a load run
 * against the multi-node stack (test/support/cluster.ts: livekit-server nodes on Redis, workers,
 * PostgreSQL through PgBouncer, the scripted model), started and stopped here unless --url points
 * at a running one. Real rtc-node participants, each in a fresh room: text through
 * ChatParticipant, voice through VoiceCaller with the audio fixtures. Every identity has a colour
 * word of its own; every reply and every model request is checked against the user who made it.
 *
 * How concurrent voice calls get their own transcripts: the speech stand-in's transcript queue is
 * one list for the whole server and no STT request names its room (no header, the same URL and key
 * for every job of a worker), so the load run does not queue. It sets the stand-in's
 * `transcriber`, which picks the transcript from the utterance's speech duration (the nearest
 * fixture: 2.08 s "remember my favourite colour", 1.48 s "what is my favourite colour"), and the
 * transcripts carry no colour: the scripted model picks the colour to remember from the request's
 * `user` (the pseudonymous id identityToUserId gives each identity). A misheard utterance shows up
 * as a failed turn (the reply has no colour, or the wrong tool ran), never as a silent swap.
 */
import '../test/support/quiet-rtc.js';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ParticipantKind } from '@livekit/rtc-node';
import { identityToUserId } from '../memory/index.js';
import { startCluster, type Cluster } from '../test/support/cluster.js';
import { recallColour, rememberColour } from '../test/support/colour-script.js';
import {
  ScriptedOpenAI,
  both,
  isChatRequest,
  lastToolResult,
  offers,
  rules,
  systemText,
  toolResultFor,
  userSaid,
  type RecordedRequest,
} from '../test/support/openai-standin.js';
import { releaseLiveKitClients } from '../test/support/stack.js';
import { ChatParticipant } from './lib/chat-participant.js';
import { FRAME_MS, VoiceCaller, measureAudible, now } from './lib/voice-caller.js';
import { readWavFile } from './lib/wav.js';
import { intOption, parseScriptArgs } from './lib/cli-args.js';
import { runMain } from './livekit/main.js';
import { childrenMap, descendants } from '../test/support/proc.js';
import { seededRandom } from '../test/support/random.js';

const FIXTURES = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../test/fixtures/audio');

/** The voice turns: a fixture and the transcript the stand-in answers for it (chosen by duration). */
const VOICE_TURNS = [
  { wav: 'alice-teal.wav', transcript: 'remember my favourite colour', kind: 'remember' },
  { wav: 'alice-question.wav', transcript: 'what is my favourite colour', kind: 'recall' },
] as const;

/** Colour words; identity n gets BASE[n % len] with a number after the first round ("cobalt2"). */
const BASE_COLOURS = [
  'amber',
  'azure',
  'beige',
  'cobalt',
  'coral',
  'crimson',
  'cyan',
  'ebony',
  'emerald',
  'fuchsia',
  'indigo',
  'ivory',
  'jade',
  'khaki',
  'lavender',
  'lilac',
  'magenta',
  'maroon',
  'mauve',
  'ochre',
  'olive',
  'peach',
  'plum',
  'russet',
  'saffron',
  'scarlet',
  'sepia',
  'sienna',
  'tangerine',
  'taupe',
  'umber',
  'vermilion',
];
export const colourFor = (n: number): string =>
  `${BASE_COLOURS[n % BASE_COLOURS.length]}${n >= BASE_COLOURS.length ? Math.floor(n / BASE_COLOURS.length) + 1 : ''}`;

export interface LoadTarget {
  url: string;
  apiKey: string;
  apiSecret: string;
  agentName: string;
  /** Worker main processes to sample (their job processes are their descendants). */
  workerPids?: number[];
}

export interface LoadOptions {
  sessions: number;
  concurrency: number;
  /** Share of sessions that call by voice (0-1). */
  voiceShare: number;
  /** Share of sessions whose identity was used by an earlier session of the run (0-1). */
  returningShare: number;
  nodes: number;
  workers: number;
  /** A running stack instead of starting one (then the model, its requests and the worker logs are not ours). */
  target?: LoadTarget;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
  /** Seeds the choice of returning identities (default 1). */
  seed?: number;
  /** Process sampling interval (default 1000 ms). */
  sampleMs?: number;
  /** Write each started worker's log here (worker-<n>.log) at the end. */
  logDir?: string;
  /** The workers' MEMORY setting (default on); off measures the same calls without memory. */
  memory?: 'on' | 'off';
  /** Seconds each session stays in its call after its turns, as a real call would (default 0). */
  holdSec?: number;
  /** The workers' AGENT_IDLE_PROCESSES (default: the worker's own default). */
  idleProcesses?: number;
  /** Spread the first `concurrency` sessions over this many seconds instead of starting them at once. */
  rampSec?: number;
}

interface PlannedSession {
  index: number;
  identity: string;
  colour: string;
  voice: boolean;
  returning: boolean;
  /** A returning session picked on purpose to overlap the identity's previous session. */
  overlapping: boolean;
  node: number;
  worker: number;
}

export interface Distribution {
  count: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
}

export interface LoadResult {
  nodes: number;
  workers: number;
  stack: 'started' | 'external';
  agentMode: 'text' | 'voice';
  options: {
    sessions: number;
    concurrency: number;
    voiceShare: number;
    returningShare: number;
    seed: number;
    memory: 'on' | 'off';
    holdSec: number;
    rampSec: number;
    idleProcesses: number | null;
  };
  durationSec: number;
  sessions: {
    planned: number;
    started: number;
    completed: number;
    failed: number;
    text: number;
    voice: number;
    returning: number;
    distinctIdentities: number;
    /** Sessions that ran while another session of the same identity was in a call. */
    concurrentSameIdentity: number;
    /** Returning sessions joining after a previous session of theirs stored the colour... */
    returningWithStoredColour: number;
    /** ...and of those, greeted with the colour (memory followed them to this node and worker). */
    greetedWithMemory: number;
  };
  errors: number;
  errorSamples: string[];
  crossUserReads: number;
  crossUserReadSamples: string[];
  checked: {
    replies: number;
    modelRequests: number | null;
    /** Model requests without a known `user` (should be 0 with memory on). */
    unattributedRequests: number | null;
    /** Voice utterances the stand-in transcribed, and those it could not place (should be 0). */
    voiceUtterances: number | null;
    unrecognizedUtterances: number | null;
  };
  joinToGreetingMs: Distribution;
  turnMs: { text: Distribution; voice: Distribution; all: Distribution };
  memoryOps: {
    count: number | null;
    byTool: Record<string, number>;
    byOutcome: Record<string, number>;
    ms: Distribution;
  };
  workerProcesses: ProcessReport;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function distribution(values: number[]): Distribution {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  const pick = (q: number) =>
    sorted.length === 0 ? null : Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);
  return {
    count: sorted.length,
    p50: pick(0.5),
    p95: pick(0.95),
    p99: pick(0.99),
    max: sorted.length ? Math.round(sorted.at(-1)!) : null,
  };
}

/** Sessions k with floor((k+1)·share) > floor(k·share): the share spread evenly over the run. */
const spread = (k: number, share: number) => Math.floor((k + 1) * share + 1e-9) > Math.floor(k * share + 1e-9);

export function planSessions(options: LoadOptions, runId: string): PlannedSession[] {
  const rnd = seededRandom(options.seed ?? 1);
  const identities: Array<{ identity: string; colour: string }> = [];
  const plan: PlannedSession[] = [];
  let returningCount = 0;
  for (let i = 0; i < options.sessions; i++) {
    const returning = i > 0 && spread(i, options.returningShare);
    let who: { identity: string; colour: string };
    let overlapping = false;
    if (returning) {
      // Every other returning session takes the newest identity (its first call is most likely
      // still going: the same user on two calls at once); the others take any earlier one.
      overlapping = returningCount % 2 === 0;
      who = overlapping ? identities.at(-1)! : identities[Math.floor(rnd() * identities.length)]!;
      returningCount++;
    } else {
      const n = identities.length;
      who = { identity: `load-${runId}-${n}@example.com`, colour: colourFor(n) };
      identities.push(who);
    }
    const nodes = options.target ? 1 : options.nodes;
    const workers = options.target ? 1 : options.workers;
    plan.push({
      index: i,
      ...who,
      voice: spread(i, options.voiceShare),
      returning,
      overlapping,
      node: i % nodes,
      worker: Math.floor(i / nodes) % workers,
    });
  }
  return plan;
}

/** The colour of the memory block's favourite colour entry, if any. */
const blockColour = (request: RecordedRequest) => /"favorite_color": "(\w+)"/.exec(systemText(request))?.[1];

/** What the model does, from the request alone; `colourOfUser` maps the request's `user` to a colour. */
export function loadScript(colourOfUser: (userId: string | undefined) => string | undefined) {
  const userOf = (req: RecordedRequest) => (req.body as { user?: string } | undefined)?.user;
  return rules(
    [
      rememberColour(/I like the colou?r (\w+)/i),
      {
        // Voice: the transcript has no colour; the user's own one (by the request's pseudonymous id).
        when: both(offers('remember'), userSaid(/remember my favou?rite colou?r/i)),
        reply: (req) => ({
          toolCalls: [
            {
              name: 'remember',
              arguments: {
                category: 'PREFERENCE',
                key: 'favorite_color',
                value: colourOfUser(userOf(req)) ?? 'unknown',
              },
            },
          ],
        }),
      },
      recallColour,
      { when: toolResultFor(), reply: (req) => ({ text: `Done: ${String(lastToolResult(req)!.value)}` }) },
      { when: (req) => systemText(req).includes('first conversation'), reply: { text: 'Hello, nice to meet you!' } },
      {
        when: (req) => systemText(req).includes('returning'),
        reply: (req) => {
          const colour = blockColour(req);
          return { text: colour ? `Welcome back! Your colour is ${colour}.` : 'Welcome back!' };
        },
      },
    ],
    { text: 'OK.' },
  );
}

// ---------------------------------------------------------------------------------------------
// Worker processes: CPU and RSS from /proc
// ---------------------------------------------------------------------------------------------

export interface ProcessReport {
  sampleIntervalMs: number;
  samples: number;
  clockTicksPerSec: number;
  workers: Array<{ pid: number; cpuSec: number; peakRssMb: number }>;
  jobProcesses: {
    count: number;
    cpuSec: Distribution & { total: number };
    /** CPU used while the run went on, per process, as a share of one core. */
    cpuPercentOfRun: Distribution;
    peakRssMb: Distribution;
  };
  processes: Array<{
    pid: number;
    workerPid: number;
    role: 'worker' | 'job';
    cpuSec: number;
    cpuSecDuringRun: number;
    peakRssMb: number;
  }>;
}

interface ProcessTrack {
  pid: number;
  workerPid: number;
  role: 'worker' | 'job';
  firstTicks: number;
  lastTicks: number;
  peakRssKb: number;
}

function clockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
}

function readProc(pid: number): { ticks: number; rssKb: number } | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the command name.
    const ticks = Number(fields[11]) + Number(fields[12]);
    const rss = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return { ticks, rssKb: rss ? Number(rss[1]) : 0 };
  } catch {
    return undefined;
  }
}

/** Samples the process trees of the worker main processes (the job processes are their descendants). */
/** The CPU ticks of these worker processes and all their descendants. */
function treeTicks(roots: number[]): number {
  const children = childrenMap();
  return roots
    .flatMap((root) => [root, ...descendants(root, children)])
    .reduce((sum, pid) => sum + (readProc(pid)?.ticks ?? 0), 0);
}

/**
 * Wait until the workers' process trees use under a tenth of a core for two seconds in a row (their
 * idle job processes started and initialized). False when that did not happen within `timeoutMs`.
 */
async function waitForQuietWorkers(pids: number[], timeoutMs: number): Promise<boolean> {
  if (pids.length === 0 || !fs.existsSync('/proc/self/stat')) return true;
  const hz = clockTicks();
  const deadline = Date.now() + timeoutMs;
  let quiet = 0;
  let before = treeTicks(pids);
  while (Date.now() < deadline) {
    await sleep(1000);
    const after = treeTicks(pids);
    quiet = (after - before) / hz < 0.1 ? quiet + 1 : 0;
    if (quiet >= 2) return true;
    before = after;
  }
  return false;
}

class ProcessSampler {
  readonly #tracks = new Map<number, ProcessTrack>();
  readonly #hz = clockTicks();
  #samples = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #startedAt = Date.now();
  #stoppedAt = 0;

  constructor(
    readonly workerPids: number[],
    readonly intervalMs: number,
  ) {}

  start(): void {
    this.sample();
    this.#timer = setInterval(() => this.sample(), this.intervalMs);
    this.#timer.unref();
  }

  sample(): void {
    if (this.workerPids.length === 0 || !fs.existsSync('/proc/self/stat')) return;
    const children = childrenMap();
    for (const root of this.workerPids) {
      const walk = (pid: number, role: 'worker' | 'job') => {
        const read = readProc(pid);
        if (read) {
          let track = this.#tracks.get(pid);
          if (!track) {
            track = { pid, workerPid: root, role, firstTicks: read.ticks, lastTicks: read.ticks, peakRssKb: 0 };
            this.#tracks.set(pid, track);
          }
          track.lastTicks = read.ticks;
          track.peakRssKb = Math.max(track.peakRssKb, read.rssKb);
        }
        for (const child of children.get(pid) ?? []) walk(child, 'job');
      };
      walk(root, 'worker');
    }
    this.#samples++;
  }

  stop(): ProcessReport {
    if (this.#timer) clearInterval(this.#timer);
    this.sample();
    this.#stoppedAt = Date.now();
    const runSec = Math.max(0.001, (this.#stoppedAt - this.#startedAt) / 1000);
    const sec = (ticks: number) => Math.round((ticks / this.#hz) * 100) / 100;
    const mb = (kb: number) => Math.round((kb / 1024) * 10) / 10;
    const processes = [...this.#tracks.values()].map((t) => ({
      pid: t.pid,
      workerPid: t.workerPid,
      role: t.role,
      cpuSec: sec(t.lastTicks),
      cpuSecDuringRun: sec(t.lastTicks - t.firstTicks),
      peakRssMb: mb(t.peakRssKb),
    }));
    const jobs = processes.filter((p) => p.role === 'job');
    const total = Math.round(jobs.reduce((s, p) => s + p.cpuSec, 0) * 100) / 100;
    return {
      sampleIntervalMs: this.intervalMs,
      samples: this.#samples,
      clockTicksPerSec: this.#hz,
      workers: processes
        .filter((p) => p.role === 'worker')
        .map((p) => ({ pid: p.pid, cpuSec: p.cpuSec, peakRssMb: p.peakRssMb })),
      jobProcesses: {
        count: jobs.length,
        cpuSec: { ...distributionRaw(jobs.map((p) => p.cpuSec)), total },
        cpuPercentOfRun: distribution(jobs.map((p) => (p.cpuSecDuringRun / runSec) * 100)),
        peakRssMb: distributionRaw(jobs.map((p) => p.peakRssMb)),
      },
      processes,
    };
  }
}

/** Like distribution(), without rounding to whole numbers (seconds, megabytes). */
function distributionRaw(values: number[]): Distribution {
  const sorted = [...values].sort((a, b) => a - b);
  const pick = (q: number) =>
    sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : null;
  return { count: sorted.length, p50: pick(0.5), p95: pick(0.95), p99: pick(0.99), max: sorted.at(-1) ?? null };
}

// ---------------------------------------------------------------------------------------------
// One session
// ---------------------------------------------------------------------------------------------

interface SessionOutcome {
  plan: PlannedSession;
  ok: boolean;
  error?: string;
  joinToGreetingMs?: number;
  greeting?: string;
  turnMs: number[];
  /** Every text the participant received (agent replies, transcripts). */
  texts: string[];
  greetedWithMemory?: boolean;
  expectedMemory: boolean;
}

interface SessionEnv {
  url(node: number): string;
  apiKey: string;
  apiSecret: string;
  agentName(worker: number): string;
  /** Strict content checks (the scripted model is ours): a wrong reply fails the session. */
  strict: boolean;
  /** How long a session stays in its call after its turns. */
  holdMs: number;
  /** The workers run in voice mode: text sessions type into a voice call. */
  voiceStack: boolean;
  outDir: string;
  /** Identities whose colour a finished store turn has acknowledged, with when. */
  stored: Map<string, number>;
  /** Calls in progress per identity. */
  active: Map<string, number>;
  log: (line: string) => void;
}

const contains = (text: string, word: string) => new RegExp(`\\b${word}\\b`, 'i').test(text);

async function runSession(plan: PlannedSession, env: SessionEnv): Promise<SessionOutcome> {
  const room = `load-${randomBytes(5).toString('hex')}`;
  const outcome: SessionOutcome = {
    plan,
    ok: false,
    turnMs: [],
    texts: [],
    expectedMemory: plan.returning && env.stored.has(plan.identity),
  };
  const token = {
    apiKey: env.apiKey,
    apiSecret: env.apiSecret,
    identity: plan.identity,
    room,
    agentName: env.agentName(plan.worker),
  };
  const check = (ok: boolean, what: string) => {
    if (!ok && env.strict) throw new Error(what);
  };
  const stored = () => env.stored.set(plan.identity, Date.now());
  try {
    if (!plan.voice && !env.voiceStack) {
      const t0 = Date.now();
      const p = await ChatParticipant.join(env.url(plan.node), token);
      try {
        outcome.greeting = await p.waitForGreeting(60_000);
        outcome.joinToGreetingMs = p.transcript.find((l) => l.from === 'agent')!.at.getTime() - t0;
        const turn = async (text: string, expect?: string) => {
          const start = Date.now();
          const reply = await p.say(text, 60_000);
          outcome.turnMs.push(Date.now() - start);
          if (expect) check(contains(reply, expect), `${plan.identity}: reply to "${text}" lacks ${expect}: ${reply}`);
          return reply;
        };
        await turn(`I like the colour ${plan.colour}`, plan.colour);
        stored();
        await turn('What is my favourite colour?', plan.colour);
        await turn('How are you today?');
        await sleep(env.holdMs);
      } finally {
        outcome.texts.push(...p.agentReplies);
        await p.leave().catch(() => {});
      }
    } else {
      const texts: string[] = [];
      const t0 = now();
      const caller = await VoiceCaller.join({ url: env.url(plan.node), token, outDir: env.outDir });
      caller.room.registerTextStreamHandler('lk.transcription', (reader, { identity }) => {
        if (caller.room.remoteParticipants.get(identity)?.kind !== ParticipantKind.AGENT) return;
        reader.readAll().then(
          (text) => texts.push(text),
          () => {},
        );
      });
      const waitForText = async (word: string, since: number, timeoutMs: number) => {
        const deadline = Date.now() + timeoutMs;
        while (Date.now() < deadline) {
          if (texts.slice(since).some((t) => contains(t, word))) return true;
          await sleep(50);
        }
        return false;
      };
      try {
        const greeting = await caller.waitForAgentAudio({ after: 0, timeoutMs: 60_000, quietMs: 800 });
        outcome.joinToGreetingMs = greeting.firstAudibleAt - t0;
        if (outcome.expectedMemory) await waitForText(plan.colour, 0, 3_000);
        outcome.greeting = texts.join('\n');
        if (!plan.voice) {
          // Text in a voice call: a worker in voice mode serves typed chat (lk.chat) only to a
          // participant in the call (ChatParticipant, which publishes no audio and subscribes to
          // nothing, is never answered there), and answers in speech and transcription.
          const turn = async (text: string, expect?: string) => {
            const since = texts.length;
            const start = now();
            await caller.room.localParticipant!.sendText(text, { topic: 'lk.chat' });
            const heard = await caller.waitForAgentAudio({ after: start, timeoutMs: 30_000, quietMs: 800 });
            outcome.turnMs.push(heard.firstAudibleAt - start);
            if (expect) {
              const ok = await waitForText(expect, since, 5_000);
              check(ok, `${plan.identity}: reply to "${text}" lacks ${expect}: ${texts.slice(since).join(' | ')}`);
            }
          };
          await turn(`I like the colour ${plan.colour}`, plan.colour);
          stored();
          await turn('What is my favourite colour?', plan.colour);
          await turn('How are you today?');
        }
        for (const { wav, kind } of plan.voice ? VOICE_TURNS : []) {
          const since = texts.length;
          const file = path.join(FIXTURES, wav);
          const said = await caller.say(file);
          const speechEnd = said.startedAt + (await speechEndSec(file)) * 1000 - FRAME_MS;
          const heard = await caller.waitForAgentAudio({ after: said.endedAt, timeoutMs: 30_000, quietMs: 800 });
          outcome.turnMs.push(heard.firstAudibleAt - speechEnd);
          const ok = await waitForText(plan.colour, since, 5_000);
          check(
            ok,
            `${plan.identity}: no reply with ${plan.colour} to the ${kind} turn (${wav}): ${texts.slice(since).join(' | ')}`,
          );
          if (kind === 'remember') stored();
        }
        await sleep(env.holdMs);
      } finally {
        await caller.leave().catch(() => {});
        outcome.texts.push(...texts);
      }
    }
    outcome.greetedWithMemory = outcome.greeting !== undefined && contains(outcome.greeting, plan.colour);
    outcome.ok = true;
  } catch (error) {
    outcome.error = `${plan.identity} (session ${plan.index + 1}, ${plan.voice ? 'voice' : 'text'}): ${(error as Error).message}`;
  }
  return outcome;
}

const speechEnds = new Map<string, number>();
async function speechEndSec(file: string): Promise<number> {
  let end = speechEnds.get(file);
  if (end === undefined) {
    end = measureAudible(await readWavFile(file)).lastAudibleEndSec ?? 0;
    speechEnds.set(file, end);
  }
  return end;
}

/** Speech durations of the voice fixtures, for the transcriber. */
async function voiceTranscriber(): Promise<(seconds: number) => string> {
  const lengths: Array<{ seconds: number; transcript: string }> = [];
  for (const turn of VOICE_TURNS) {
    const audible = measureAudible(await readWavFile(path.join(FIXTURES, turn.wav)));
    lengths.push({
      seconds: (audible.lastAudibleEndSec ?? 0) - (audible.firstAudibleSec ?? 0),
      transcript: turn.transcript,
    });
  }
  return (seconds) =>
    lengths.reduce((best, l) => (Math.abs(l.seconds - seconds) < Math.abs(best.seconds - seconds) ? l : best))
      .transcript;
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const runId = randomBytes(3).toString('hex');
  const plan = planSessions(options, runId);
  const agentMode = options.voiceShare > 0 ? 'voice' : 'text';
  const colourByUser = new Map(plan.map((s) => [identityToUserId(s.identity), s.colour]));
  const colours = [...new Set(plan.map((s) => s.colour))];
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lkm-load-'));
  const started = Date.now();
  const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
  const progress = (line: string) => log(`[load ${elapsed()}] ${line}`);

  let cluster: Cluster | undefined;
  let model: ScriptedOpenAI | undefined;
  const transcribe = await voiceTranscriber();
  let unrecognized = 0;
  try {
    if (!options.target) {
      model = new ScriptedOpenAI(loadScript((user) => (user ? colourByUser.get(user) : undefined)));
      model.speech.transcriber = ({ durationSeconds }) => {
        // Anything far from both fixtures (a cough, a split utterance) is "not recognized".
        if (durationSeconds < 0.8 || durationSeconds > 3.5) {
          unrecognized++;
          return undefined;
        }
        return transcribe(durationSeconds);
      };
      await model.start();
      progress(`starting the stack: ${options.nodes} node(s), ${options.workers} worker(s), agent mode ${agentMode}`);
      cluster = await startCluster({
        nodes: options.nodes,
        workers: options.workers,
        model,
        workerEnv: {
          ...(agentMode === 'voice'
            ? {
                AGENT_MODE: 'voice',
                STT_MODEL: 'gpt-4o-mini-transcribe',
                TTS_MODEL: 'gpt-4o-mini-tts',
                STT_MODE: 'realtime',
              }
            : { AGENT_MODE: 'text' }),
          MEMORY: options.memory ?? 'on',
          ...(options.idleProcesses === undefined ? {} : { AGENT_IDLE_PROCESSES: String(options.idleProcesses) }),
        },
        onProgress: (line) => progress(`  ${line}`),
      });
    }
    const c = cluster;
    const target = options.target;
    const env: SessionEnv = {
      url: (node) => (c ? c.nodes[node]!.url : target!.url),
      apiKey: c ? c.nodes[0]!.server.apiKey : target!.apiKey,
      apiSecret: c ? c.nodes[0]!.server.apiSecret : target!.apiSecret,
      agentName: (worker) => (c ? c.workers[worker]!.agentName : target!.agentName),
      // Without memory the replies cannot carry the colour: only errors and cross-user reads count.
      strict: Boolean(c) && options.memory !== 'off',
      holdMs: (options.holdSec ?? 0) * 1000,
      voiceStack: agentMode === 'voice',
      outDir,
      stored: new Map(),
      active: new Map(),
      log: progress,
    };
    const workerPids = c ? c.workers.map((w) => w.pid) : (target?.workerPids ?? []);
    if (c) {
      // A worker warms its idle job processes one at a time after it registers; a run that starts
      // before that measures process start-up, not calls.
      progress('waiting for the workers to warm their job processes...');
      const settled = await waitForQuietWorkers(workerPids, 90_000);
      progress(settled ? '  workers idle' : '  workers still busy after 90 s; starting anyway');
    }
    const sampler = new ProcessSampler(workerPids, options.sampleMs ?? 1000);
    const requestsBefore = model?.requests.length ?? 0;
    const logsBefore = c ? c.workers.map((w) => w.stack.workerLog.length) : [];

    progress(
      `${plan.length} sessions (${plan.filter((s) => s.voice).length} voice, ${plan.filter((s) => s.returning).length} returning), concurrency ${options.concurrency}`,
    );
    sampler.start();
    const runStarted = Date.now();
    const outcomes: SessionOutcome[] = [];
    let next = 0;
    let startedCount = 0;
    let concurrentSameIdentity = 0;
    const status = setInterval(() => {
      const failed = outcomes.filter((o) => !o.ok).length;
      progress(
        `${startedCount}/${plan.length} started, ${outcomes.length - failed} completed, ${failed} failed, ${startedCount - outcomes.length} in calls`,
      );
    }, 5_000);
    status.unref();
    const lanes = Math.max(1, Math.min(options.concurrency, plan.length));
    const runner = async (lane: number) => {
      await sleep(((options.rampSec ?? 0) * 1000 * lane) / lanes);
      for (;;) {
        const session = plan[next++];
        if (!session) return;
        startedCount++;
        const inCall = env.active.get(session.identity) ?? 0;
        if (inCall > 0) concurrentSameIdentity++;
        env.active.set(session.identity, inCall + 1);
        const where = c ? ` via ${c.nodes[session.node]!.name} to worker ${session.worker + 1}` : '';
        progress(
          `session ${session.index + 1} start: ${session.identity} (${session.voice ? 'voice' : 'text'}${session.returning ? ', returning' : ''}${inCall > 0 ? ', also in another call' : ''})${where}`,
        );
        const outcome = await runSession(session, env);
        env.active.set(session.identity, (env.active.get(session.identity) ?? 1) - 1);
        outcomes.push(outcome);
        progress(
          outcome.ok
            ? `session ${session.index + 1} done: greeting ${Math.round(outcome.joinToGreetingMs ?? NaN)} ms, turns ${outcome.turnMs.map((t) => Math.round(t)).join('/')} ms`
            : `session ${session.index + 1} FAILED: ${outcome.error}`,
        );
      }
    };
    await Promise.all(Array.from({ length: lanes }, (_, lane) => runner(lane)));
    clearInterval(status);
    const durationSec = (Date.now() - runStarted) / 1000;
    const processes = sampler.stop();

    // Cross-user reads: every reply and every model request against the user who made it.
    const colourPattern = new RegExp(`\\b(${colours.join('|')})\\b`, 'gi');
    const foreign = (text: string, own: string | undefined) =>
      [...text.matchAll(colourPattern)].map((m) => m[1]!.toLowerCase()).filter((w) => w !== own);
    const crossSamples: string[] = [];
    let crossUserReads = 0;
    let replies = 0;
    for (const o of outcomes) {
      for (const text of o.texts) {
        replies++;
        const found = foreign(text, o.plan.colour);
        if (found.length > 0) {
          crossUserReads++;
          crossSamples.push(
            `reply to ${o.plan.identity} (own ${o.plan.colour}) names ${found.join(', ')}: ${text.slice(0, 200)}`,
          );
        }
      }
    }
    let modelRequests: number | null = null;
    let unattributed: number | null = null;
    if (model) {
      modelRequests = 0;
      unattributed = 0;
      for (const request of model.requests.slice(requestsBefore).filter(isChatRequest)) {
        modelRequests++;
        const user = (request.body as { user?: string } | undefined)?.user;
        const own = user ? colourByUser.get(user) : undefined;
        if (!own) unattributed++;
        // Without a user (memory off sends none) the request cannot be attributed; it still must
        // not carry two identities' colours.
        const named = [...new Set(foreign(JSON.stringify(request.messages), undefined))];
        const found = own ? foreign(JSON.stringify(request.messages), own) : named.length > 1 ? named : [];
        if (found.length > 0) {
          crossUserReads++;
          crossSamples.push(
            `model request ${request.index} of user ${user ?? '(none)'} (own ${own ?? '-'}) names ${found.join(', ')}`,
          );
        }
      }
    }

    // Memory operations, from the workers' "memory tool answered" lines.
    const memoryMs: number[] = [];
    const byTool: Record<string, number> = {};
    const byOutcome: Record<string, number> = {};
    if (c) {
      c.workers.forEach((w, i) => {
        for (const line of w.stack.workerLog.slice(logsBefore[i])) {
          if (!line.includes('memory tool answered')) continue;
          try {
            const entry = JSON.parse(line) as { ms?: unknown; tool?: unknown; outcome?: unknown };
            if (typeof entry.ms === 'number') memoryMs.push(entry.ms);
            byTool[String(entry.tool)] = (byTool[String(entry.tool)] ?? 0) + 1;
            byOutcome[String(entry.outcome)] = (byOutcome[String(entry.outcome)] ?? 0) + 1;
          } catch {
            // not a JSON line
          }
        }
      });
    }

    const ok = outcomes.filter((o) => o.ok);
    const errors = outcomes.filter((o) => !o.ok).map((o) => o.error!);
    const returningExpected = ok.filter((o) => o.expectedMemory);
    const result: LoadResult = {
      nodes: c ? c.nodes.length : 1,
      workers: c ? c.workers.length : workerPids.length,
      stack: c ? 'started' : 'external',
      agentMode,
      options: {
        sessions: options.sessions,
        concurrency: options.concurrency,
        voiceShare: options.voiceShare,
        returningShare: options.returningShare,
        seed: options.seed ?? 1,
        memory: options.memory ?? 'on',
        holdSec: options.holdSec ?? 0,
        rampSec: options.rampSec ?? 0,
        idleProcesses: options.idleProcesses ?? null,
      },
      durationSec: Math.round(durationSec * 10) / 10,
      sessions: {
        planned: plan.length,
        started: startedCount,
        completed: ok.length,
        failed: outcomes.length - ok.length,
        text: plan.filter((s) => !s.voice).length,
        voice: plan.filter((s) => s.voice).length,
        returning: plan.filter((s) => s.returning).length,
        distinctIdentities: new Set(plan.map((s) => s.identity)).size,
        concurrentSameIdentity,
        returningWithStoredColour: returningExpected.length,
        greetedWithMemory: returningExpected.filter((o) => o.greetedWithMemory).length,
      },
      errors: errors.length,
      errorSamples: errors.slice(0, 20),
      crossUserReads,
      crossUserReadSamples: crossSamples.slice(0, 20),
      checked: {
        replies,
        modelRequests,
        unattributedRequests: unattributed,
        voiceUtterances: model ? model.speech.transcriptions.length : null,
        unrecognizedUtterances: model ? unrecognized : null,
      },
      joinToGreetingMs: distribution(ok.map((o) => o.joinToGreetingMs!)),
      turnMs: {
        text: distribution(ok.filter((o) => !o.plan.voice).flatMap((o) => o.turnMs)),
        voice: distribution(ok.filter((o) => o.plan.voice).flatMap((o) => o.turnMs)),
        all: distribution(ok.flatMap((o) => o.turnMs)),
      },
      memoryOps: {
        count: c ? memoryMs.length : null,
        byTool,
        byOutcome,
        ms: distributionRaw(memoryMs.map((m) => Math.round(m * 100) / 100)),
      },
      workerProcesses: processes,
    };
    return result;
  } finally {
    progress('stopping...');
    if (cluster && options.logDir) {
      fs.mkdirSync(options.logDir, { recursive: true });
      for (const w of cluster.workers) {
        fs.writeFileSync(path.join(options.logDir, `worker-${w.index + 1}.log`), `${w.stack.workerLog.join('\n')}\n`);
      }
    }
    await cluster?.stop().catch(() => {});
    await model?.stop().catch(() => {});
    await releaseLiveKitClients();
    fs.rmSync(outDir, { recursive: true, force: true });
  }
}

const fmt = (v: number | null | undefined) => (v === null || v === undefined ? '-' : String(v));

/** The table printed at the end. */
export function formatTable(r: LoadResult): string {
  const d = (x: Distribution) => `${fmt(x.p50)} / ${fmt(x.p95)} / ${fmt(x.p99)} / ${fmt(x.max)} (n=${x.count})`;
  const rows: Array<[string, string]> = [
    ['stack', `${r.stack}: ${r.nodes} node(s), ${r.workers} worker(s), agent mode ${r.agentMode}`],
    ['sessions started / completed / failed', `${r.sessions.started} / ${r.sessions.completed} / ${r.sessions.failed}`],
    [
      'text / voice / returning sessions',
      `${r.sessions.text} / ${r.sessions.voice} / ${r.sessions.returning} (${r.sessions.distinctIdentities} identities, ${r.sessions.concurrentSameIdentity} while the same identity was in another call)`,
    ],
    [
      'returning greeted with their memory',
      `${r.sessions.greetedWithMemory} of ${r.sessions.returningWithStoredColour}`,
    ],
    ['errors', String(r.errors)],
    [
      'cross-user reads',
      `${r.crossUserReads} (checked ${r.checked.replies} replies, ${fmt(r.checked.modelRequests)} model requests)`,
    ],
    ['join → greeting ms p50 / p95 / p99 / max', d(r.joinToGreetingMs)],
    ['text turn ms p50 / p95 / p99 / max', d(r.turnMs.text)],
    ['voice turn ms (end of speech → first audio)', d(r.turnMs.voice)],
    [
      'memory tool calls',
      `${fmt(r.memoryOps.count)} ${JSON.stringify(r.memoryOps.byTool)} ${JSON.stringify(r.memoryOps.byOutcome)}`,
    ],
    ['memory tool ms p50 / p95 / p99 / max', d(r.memoryOps.ms)],
    [
      'job processes: count, CPU s p50 / max, total',
      `${r.workerProcesses.jobProcesses.count}, ${fmt(r.workerProcesses.jobProcesses.cpuSec.p50)} / ${fmt(r.workerProcesses.jobProcesses.cpuSec.max)}, ${r.workerProcesses.jobProcesses.cpuSec.total}`,
    ],
    [
      'job processes: peak RSS MB p50 / max',
      `${fmt(r.workerProcesses.jobProcesses.peakRssMb.p50)} / ${fmt(r.workerProcesses.jobProcesses.peakRssMb.max)}`,
    ],
    [
      'worker main processes: CPU s, peak RSS MB',
      r.workerProcesses.workers.map((w) => `${w.pid}: ${w.cpuSec} s, ${w.peakRssMb} MB`).join('; ') || '-',
    ],
    ['run time', `${r.durationSec} s`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const lines = rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`);
  for (const e of r.errorSamples.slice(0, 5)) lines.push(`  error: ${e}`);
  for (const x of r.crossUserReadSamples.slice(0, 5)) lines.push(`  cross-user read: ${x}`);
  return `${lines.join('\n')}\n`;
}

const HELP = `Usage: npm run load -- [options]

A load run with real rtc-node participants (text and voice) against the multi-node stack
(livekit-server nodes on Redis, workers, PostgreSQL through PgBouncer, the scripted model),
started and stopped here unless --url names a running one. Each session joins a fresh room,
is greeted, says "I like the colour <its colour>" (voice: alice-teal.wav), asks for its favourite
colour (voice: alice-question.wav) and, in text, makes small talk. Every identity has a colour
word of its own; every reply and model request naming another identity's colour is a
cross-user read. Progress on stderr; a table on stdout at the end.

  --sessions <n>          sessions in all (default 12)
  --concurrency <n>       sessions at once (default 3)
  --voice-share <0-1>     share of sessions by voice (default 0.25)
  --returning-share <0-1> share of sessions by an identity of an earlier session (default 0.5);
                          every other one takes the newest identity, usually still in its call
  --nodes <n>             livekit-server nodes to start (default 2)
  --workers <n>           workers to start (default 2)
  --url <ws-url>          a running stack instead (with --api-key, --api-secret, --agent-name);
                          the model, its requests and the worker logs are then not ours: only
                          replies are checked, content checks do not fail a session, and
                          memory operations are not counted
  --api-key <key>         (default devkey)
  --api-secret <secret>   (default secret)
  --agent-name <name>     the agent to dispatch (default memory-agent)
  --worker-pids <p,q>     with --url: worker main processes to sample for CPU and RSS
  --seed <n>              seeds the choice of returning identities (default 1)
  --json <file>           write the result as JSON (keys: nodes, workers, sessions.started,
                          sessions.completed, errors, crossUserReads, joinToGreetingMs.p50/p95/p99,
                          turnMs, memoryOps, workerProcesses, ...)
  --logs <dir>            write each started worker's log there
  --memory on|off         the workers' MEMORY (default on); off runs the same calls without memory
                          (replies are then not checked for the colour; errors and cross-user
                          reads still are)
  --hold-sec <n>          seconds each session stays in its call after its turns (default 0)
  --ramp-sec <n>          start the first <concurrency> sessions spread over this many seconds,
                          as calls arrive, rather than all at once (default 0)
  --idle-processes <n>    the workers' AGENT_IDLE_PROCESSES (warm job processes; default: the
                          worker's own, one per core up to 4)
  -h, --help              this text
`;

export async function main(argv: string[]): Promise<number> {
  const values = parseScriptArgs(
    {
      args: argv,
      options: {
        sessions: { type: 'string' },
        concurrency: { type: 'string' },
        'voice-share': { type: 'string' },
        'returning-share': { type: 'string' },
        nodes: { type: 'string' },
        workers: { type: 'string' },
        url: { type: 'string' },
        'api-key': { type: 'string' },
        'api-secret': { type: 'string' },
        'agent-name': { type: 'string' },
        'worker-pids': { type: 'string' },
        seed: { type: 'string' },
        json: { type: 'string' },
        logs: { type: 'string' },
        memory: { type: 'string' },
        'hold-sec': { type: 'string' },
        'idle-processes': { type: 'string' },
        'ramp-sec': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    },
    HELP,
  );
  if (typeof values === 'number') return values;
  const int = intOption;
  const share = (v: string | undefined, name: string, def: number) => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0 || n > 1) throw new Error(`--${name} must be a number from 0 to 1, not ${v}`);
    return n;
  };
  const onOff = (v: string | undefined): 'on' | 'off' => {
    if (v === undefined || v === 'on' || v === 'off') return v ?? 'on';
    throw new Error(`--memory must be on or off, not ${v}`);
  };
  let options: LoadOptions;
  try {
    options = {
      sessions: int(values.sessions, 'sessions', 12, 1, 100_000),
      concurrency: int(values.concurrency, 'concurrency', 3, 1, 10_000),
      voiceShare: share(values['voice-share'], 'voice-share', 0.25),
      returningShare: share(values['returning-share'], 'returning-share', 0.5),
      nodes: int(values.nodes, 'nodes', 2, 1, 15),
      workers: int(values.workers, 'workers', 2, 1, 16),
      seed: int(values.seed, 'seed', 1, 0, 2 ** 31),
      logDir: values.logs,
      memory: onOff(values.memory),
      holdSec: int(values['hold-sec'], 'hold-sec', 0, 0, 3600),
      rampSec: int(values['ramp-sec'], 'ramp-sec', 0, 0, 3600),
      idleProcesses:
        values['idle-processes'] === undefined ? undefined : int(values['idle-processes'], 'idle-processes', 0, 0, 64),
      target: values.url
        ? {
            url: values.url,
            apiKey: values['api-key'] ?? 'devkey',
            apiSecret: values['api-secret'] ?? 'secret',
            agentName: values['agent-name'] ?? 'memory-agent',
            workerPids: (values['worker-pids'] ?? '')
              .split(',')
              .filter(Boolean)
              .map((p) => int(p, 'worker-pids', 0, 1, 2 ** 31)),
          }
        : undefined,
    };
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    return 2;
  }
  let result: LoadResult;
  try {
    result = await runLoad(options);
  } catch (error) {
    process.stderr.write(`load run failed: ${(error as Error).stack ?? String(error)}\n`);
    return 1;
  }
  process.stdout.write(formatTable(result));
  if (values.json) {
    fs.writeFileSync(values.json, `${JSON.stringify(result, null, 2)}\n`);
    process.stderr.write(`wrote ${values.json}\n`);
  }
  return result.errors === 0 && result.crossUserReads === 0 ? 0 : 1;
}

runMain(import.meta.url, main);
