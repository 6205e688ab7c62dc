/**
 * npm run bench -- --voice: where the time of a voice turn goes, from the end of the caller's
 * speech to the first audible frame of the agent's answer, with memory on and off on one stack.
 *
 * One livekit-server and one scripted OpenAI-compatible stand-in (model, transcription, speech:
 * all answer at once, so what is measured is the pipeline, not a provider), two worker processes
 * registered on it (MEMORY=on and MEMORY=off, otherwise the same settings), and a real rtc-node
 * caller speaking the espeak-ng fixtures in real time. Calls alternate between the two workers.
 * Every instant comes from this process's clock: the caller's frames, and the stand-in's records
 * of each request (arrival and last byte), so no clock of another process is involved.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { FRAME_MS, VoiceCaller, measureAudible, now } from '../lib/voice-caller.js';
import { readWavFile } from '../lib/wav.js';
import { startLivekitServerOnFreePorts } from '../livekit/free-ports-server.js';
import {
  ScriptedOpenAI,
  isChatRequest,
  lastToolResult,
  rules,
  systemText,
  toolResultFor,
  trailingToolResults,
  userSaid,
  type RecordedRequest,
} from '../../test/support/openai-standin.js';
import { recallColour, rememberColour } from '../../test/support/colour-script.js';
import { releaseLiveKitClients, startStack, type Stack } from '../../test/support/stack.js';

export interface VoiceBenchOptions {
  /** Turns per column (memory on, memory off), per STT path. */
  turns: number;
  stt: Array<'realtime' | 'http'>;
  /** Extra worker environment (endpointing and VAD settings to try). */
  env: NodeJS.ProcessEnv;
  log: (line: string) => void;
}

const FIXTURES = path.resolve('test/fixtures/audio');

/** What the caller says, in order, over and over: a write, a read, and a turn memory has no part in. */
const TURNS = [
  { wav: 'alice-teal.wav', text: 'remember my favorite color is teal' },
  { wav: 'alice-question.wav', text: 'what is my favorite color' },
  { wav: 'smalltalk.wav', text: 'tell me something nice about today' },
] as const;
const TURNS_PER_CALL = 6;

/** The model: tools when offered (memory on), a plain answer otherwise (memory off). */
const script = rules(
  [
    rememberColour(/remember my favou?rite colou?r is (\w+)/i),
    recallColour,
    { when: toolResultFor(), reply: (req) => ({ text: `Got it: ${String(lastToolResult(req)!.value)}.` }) },
    { when: userSaid(/remember my/i), reply: { text: 'That is a lovely color.' } },
    { when: userSaid(/what is my/i), reply: { text: 'I am not sure, tell me.' } },
    { when: (req) => systemText(req).includes('returning'), reply: { text: 'Welcome back!' } },
  ],
  { text: 'Hello, what a fine day.' },
);

const speechEnds = new Map<string, number>();

/** Where the speech in a fixture ends, in seconds from its start (by the caller's audible rule). */
async function speechEndSec(wav: string): Promise<number> {
  let end = speechEnds.get(wav);
  if (end === undefined) {
    end = measureAudible(await readWavFile(path.join(FIXTURES, wav))).lastAudibleEndSec ?? 0;
    speechEnds.set(wav, end);
  }
  return end;
}

/** One turn's instants, all on this process's clock (ms). */
interface TurnTimes {
  column: 'on' | 'off';
  stt: 'realtime' | 'http';
  text: string;
  speechEnd: number;
  transcript: number;
  chats: Array<{ at: number; finished: number; toolResults: number }>;
  /** Time the memory tools took, as the worker measured and logged it ("memory tool answered"). */
  memoryMs: number;
  /** Time the model request waited for per-turn recall ("memory recalled for the turn", waitedMs). */
  recallMs: number;
  firstAudible: number;
}

export interface Segments {
  endOfTurn: number;
  transcription: number;
  model: number;
  memory: number;
  tools: number;
  speech: number;
  total: number;
}

const SEGMENTS: Array<[keyof Segments, string]> = [
  ['transcription', 'transcription (end of speech → final transcript)'],
  ['endOfTurn', 'end-of-turn wait (transcript → model request)'],
  ['model', 'model (requests, first to last byte)'],
  ['memory', 'memory (per-turn recall and the tools, as the worker measured them)'],
  ['tools', 'tool dispatch (agents-js: model answer → tools → next request, minus memory)'],
  ['speech', 'speech (model done → first audible frame)'],
  ['total', 'total (end of speech → first audible frame)'],
];

/** The sum of a duration field (`ms` by default) of the worker's log lines with this message. */
function loggedMs(lines: string[], message: string, field = 'ms'): number {
  let total = 0;
  for (const line of lines) {
    if (!line.includes(message)) continue;
    try {
      const ms = (JSON.parse(line) as Record<string, unknown>)[field];
      if (typeof ms === 'number') total += ms;
    } catch {
      // Not a JSON log line.
    }
  }
  return total;
}

/** Split a turn into its parts; they add up to the total by construction. */
export function segmentsOf(turn: TurnTimes): Segments {
  const first = turn.chats[0]!;
  const last = turn.chats.at(-1)!;
  let model = 0;
  let toolGaps = 0;
  turn.chats.forEach((chat, i) => {
    model += chat.finished - chat.at;
    if (i > 0) {
      const gap = chat.at - turn.chats[i - 1]!.finished;
      // The gap before a request that carries tool results is the tools running; any other gap
      // (a second reply the framework asked for) is the model's.
      if (chat.toolResults > 0) toolGaps += gap;
      else model += gap;
    }
  });
  return {
    transcription: turn.transcript - turn.speechEnd,
    // Recall runs between the end of the turn and the model request: it is memory's time.
    endOfTurn: first.at - turn.transcript - turn.recallMs,
    model,
    memory: turn.memoryMs + turn.recallMs,
    tools: toolGaps - turn.memoryMs,
    speech: turn.firstAudible - last.finished,
    total: turn.firstAudible - turn.speechEnd,
  };
}

function percentile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

export interface ColumnSummary {
  turns: number;
  p50: Segments;
  p95: Segments;
  /** Σ memory / Σ total over the column's turns. */
  memoryShare: number;
}

function summarize(turns: Segments[]): ColumnSummary {
  const pick = (q: number) =>
    Object.fromEntries(
      SEGMENTS.map(([k]) => [
        k,
        percentile(
          turns.map((t) => t[k]),
          q,
        ),
      ]),
    ) as unknown as Segments;
  const sum = (k: keyof Segments) => turns.reduce((a, t) => a + t[k], 0);
  return { turns: turns.length, p50: pick(0.5), p95: pick(0.95), memoryShare: sum('memory') / sum('total') };
}

/** Run the calls for one STT path; returns each turn's instants. */
async function runPath(
  stt: 'realtime' | 'http',
  options: VoiceBenchOptions,
  outDir: string,
): Promise<{ turns: TurnTimes[]; workerLogs: string[] }> {
  const { log } = options;
  const model = new ScriptedOpenAI(script);
  await model.start();
  const livekit = await startLivekitServerOnFreePorts({});
  const stacks: Partial<Record<'on' | 'off', Stack>> = {};
  // The stand-in records on the Date clock (ms); the caller on performance's. One offset joins them.
  const offset = Date.now() - now();
  const clock = (d: Date | undefined) => (d ? d.getTime() - offset : NaN);
  const turns: TurnTimes[] = [];
  try {
    for (const column of ['on', 'off'] as const) {
      log(`  starting the worker with MEMORY=${column} (STT ${stt})...`);
      stacks[column] = await startStack({
        model,
        livekit,
        env: {
          AGENT_MODE: 'voice',
          STT_MODE: stt,
          STT_MODEL: 'gpt-4o-mini-transcribe',
          TTS_MODEL: 'gpt-4o-mini-tts',
          MEMORY: column,
          ...options.env,
        },
      });
    }
    const calls = Math.ceil(options.turns / TURNS_PER_CALL);
    for (let call = 0; call < calls; call += 1) {
      for (const column of ['on', 'off'] as const) {
        const stack = stacks[column]!;
        // Every other call is the same caller again, so half the calls start with memories.
        const identity = `voice-bench-${column}-${Math.floor(call / 2)}@example.com`;
        const caller = await VoiceCaller.join({
          url: livekit.url,
          token: {
            apiKey: livekit.apiKey,
            apiSecret: livekit.apiSecret,
            identity,
            room: `bench-${randomBytes(4).toString('hex')}`,
            agentName: stack.agentName,
          },
          outDir,
        });
        try {
          await caller.waitForAgentAudio({ after: 0, timeoutMs: 60_000, quietMs: 800 });
          const count = Math.min(TURNS_PER_CALL, options.turns - call * TURNS_PER_CALL);
          for (let i = 0; i < count; i += 1) {
            const { wav, text } = TURNS[i % TURNS.length]!;
            const since = model.requests.length;
            const logSince = stack.workerLog.length;
            const transcriptsBefore = model.speech.transcriptions.length;
            model.queueTranscript(text);
            const said = await caller.say(path.join(FIXTURES, wav));
            // The end of speech is the last audible frame of the fixture, not the end of the file
            // (espeak-ng ends its files with silence).
            const speechEnd = said.startedAt + (await speechEndSec(wav)) * 1000 - FRAME_MS;
            const heard = await caller.waitForAgentAudio({ after: said.endedAt, timeoutMs: 30_000, quietMs: 800 });
            const transcript = model.speech.transcriptions.slice(transcriptsBefore).find((t) => t.transcript === text);
            const chats = model.requests
              .slice(since)
              .filter((r: RecordedRequest) => isChatRequest(r))
              .map((r) => ({
                at: clock(r.at),
                finished: clock(r.finishedAt),
                toolResults: trailingToolResults(r).length,
              }));
            if (!transcript || chats.length === 0 || chats.some((c) => Number.isNaN(c.finished))) {
              throw new Error(
                `turn "${text}" (${column}, ${stt}): ${transcript ? 'no complete model request' : 'no transcript'} recorded`,
              );
            }
            turns.push({
              column,
              stt,
              text,
              speechEnd,
              transcript: clock(transcript.at),
              chats,
              memoryMs: loggedMs(stack.workerLog.slice(logSince), 'memory tool answered'),
              // What the reply waited for recall (it starts on the final transcript, so often ~0).
              recallMs: loggedMs(stack.workerLog.slice(logSince), 'memory recalled for the turn', 'waitedMs'),
              firstAudible: heard.firstAudibleAt,
            });
            log(
              `  ${stt} memory ${column} call ${call + 1}/${calls} turn ${i + 1}/${count}: ` +
                `${Math.round(heard.firstAudibleAt - speechEnd)} ms`,
            );
          }
        } finally {
          await caller.leave();
        }
      }
    }
    return { turns, workerLogs: [...(stacks.on?.workerLog ?? []), ...(stacks.off?.workerLog ?? [])] };
  } finally {
    for (const stack of Object.values(stacks)) await stack.stop();
    await livekit.stop();
    await model.stop();
  }
}

export interface VoiceBenchResult {
  settings: NodeJS.ProcessEnv;
  paths: Record<string, { on: ColumnSummary; off: ColumnSummary }>;
  turns: Array<TurnTimes & { segments: Segments }>;
}

export async function runVoiceBench(options: VoiceBenchOptions): Promise<VoiceBenchResult> {
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lkm-voice-bench-'));
  const result: VoiceBenchResult = { settings: options.env, paths: {}, turns: [] };
  try {
    for (const stt of options.stt) {
      options.log(`voice: STT over ${stt}, ${options.turns} turns with memory on and ${options.turns} with it off`);
      const { turns } = await runPath(stt, options, outDir);
      const of = (column: 'on' | 'off') => turns.filter((t) => t.column === column).map(segmentsOf);
      result.paths[stt] = { on: summarize(of('on')), off: summarize(of('off')) };
      result.turns.push(...turns.map((t) => ({ ...t, segments: segmentsOf(t) })));
    }
  } finally {
    await releaseLiveKitClients();
    fs.rmSync(outDir, { recursive: true, force: true });
  }
  return result;
}

const ms = (v: number) => (Number.isNaN(v) ? '-' : `${Math.round(v)}`);

/** The README's table: p50 / p95 per segment, memory on next to memory off, per STT path. */
export function formatVoiceTable(result: VoiceBenchResult): string {
  const lines: string[] = [];
  for (const [stt, { on, off }] of Object.entries(result.paths)) {
    lines.push(
      `Voice turn, STT over ${stt} (${on.turns} turns with memory, ${off.turns} without), ms p50 / p95:`,
      '',
      `| part | memory on | memory off |`,
      `| --- | ---: | ---: |`,
      ...SEGMENTS.map(
        ([k, label]) => `| ${label} | ${ms(on.p50[k])} / ${ms(on.p95[k])} | ${ms(off.p50[k])} / ${ms(off.p95[k])} |`,
      ),
      `| memory's share of the total (Σ memory / Σ total) | ${(on.memoryShare * 100).toFixed(2)}% | - |`,
      '',
    );
  }
  return lines.join('\n');
}
