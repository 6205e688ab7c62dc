/**
 * npm run demo -- --voice: the offline showcase, spoken. A local livekit-server, the worker in
 * voice mode, and two callers (alice and bob) who speak real audio (the espeak-ng fixtures) into
 * their own rooms and listen to the agent; then what the agent heard and said, and each user's memory.
 */
import '../test/support/quiet-rtc.js';
import path from 'node:path';
import { demoScript } from '../test/support/demo-script.js';
import { releaseLiveKitClients, startStack, type Stack } from '../test/support/stack.js';
import { memoryTable } from './lib/memory-table.js';
import { type VoiceCaller } from './lib/voice-caller.js';

const HELP = `Usage: npm run demo -- --voice

The offline showcase, spoken. Starts a local livekit-server, the memory worker in voice mode
(the VAD from @livekit/local-inference, HTTP transcription) and two callers, alice@example.com and
bob@example.com, each in their own room. They speak recorded sentences (test/fixtures/audio/, made
with espeak-ng) in real time and listen to the agent. Alice asks the agent to remember her
favourite colour; Bob, at the same time in his room, asks for his; then Alice asks for hers.

Prints what each caller said, what the agent heard and answered, how much agent audio each caller
heard, where the recordings of what they heard are, and what each user's memory holds.

Speech and the model are the scripted stand-ins from test/support/ (no paid API, no download): the
transcription stand-in hears real audio and answers the sentence this script queued, the speech
stand-in synthesizes real audio. To talk to the agent yourself with a microphone, see the README
("Talk to it").

Memory: DATABASE_URL when set, else the embedded database in MEMORY_DATA_DIR (default .data/).
`;

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(HELP);
  process.exit(0);
}

const FIXTURES = path.resolve('test/fixtures/audio');
const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';
/** Who says what, in this order; each line waits for the agent's spoken answer to the one before. */
const TURNS: Array<{ who: string; wav: string; text: string }> = [
  { who: ALICE, wav: 'alice-teal.wav', text: 'remember my favorite color is teal' },
  { who: BOB, wav: 'bob-question.wav', text: 'what is my favorite color' },
  { who: ALICE, wav: 'alice-question.wav', text: 'what is my favorite color' },
];

const say = (line: string) => process.stdout.write(`${line}\n`);
const seconds = (s: number) => `${s.toFixed(1)} s`;

say(
  'The model, transcription and speech are scripted OpenAI-compatible stand-ins from test/support/\n' +
    '(not a language model). Everything else is real: livekit-server, the worker and its job\n' +
    'processes, the VAD, the callers publishing and hearing audio, and the database.',
);

let stack: Stack | undefined;
const callers = new Map<string, VoiceCaller>();
try {
  const dataDir = path.resolve(process.env.MEMORY_DATA_DIR || '.data');
  stack = await startStack({
    onProgress: (line) => say(`  ${line}`),
    dataDir,
    env: {
      AGENT_MODE: 'voice',
      STT_MODEL: 'whisper-1',
      TTS_MODEL: 'tts-1',
      ...(process.env.DATABASE_URL ? { DATABASE_URL: process.env.DATABASE_URL } : {}),
    },
  });
  stack.model.setResponder(demoScript);
  const outDir = path.join(dataDir, 'demo-voice');

  say('\nalice and bob call the agent, each in their own room...');
  for (const identity of [ALICE, BOB]) {
    const caller = await stack.voiceCall(identity, outDir, `demo-voice-${identity.split('@')[0]}-${Date.now()}`);
    callers.set(identity, caller);
  }
  for (const [identity, caller] of callers) {
    const greeting = await caller.waitForAgentAudio({ after: 0, timeoutMs: 60_000, quietMs: 800 });
    say(`  the agent greeted ${identity.split('@')[0]} aloud (${seconds(greeting.audibleSec)} heard)`);
  }
  say('');
  for (const turn of TURNS) {
    const caller = callers.get(turn.who)!;
    const name = turn.who.split('@')[0]!;
    const speechesBefore = stack.model.speech.speeches.length;
    stack.model.queueTranscript(turn.text);
    const transcribed = stack.model.speech.transcriptions.length;
    const said = await caller.say(path.join(FIXTURES, turn.wav));
    const answer = await caller.waitForAgentAudio({ after: said.endedAt, timeoutMs: 30_000, quietMs: 800 });
    const heard = stack.model.speech.transcriptions[transcribed];
    const replies = stack.model.speech.speeches.slice(speechesBefore).map((s) => `"${String(s.input)}"`);
    say(`${name.padStart(6)} said   ${turn.wav} (${seconds(said.durationSec)} of audio)`);
    say(
      `${'agent'.padStart(6)} heard  "${heard?.transcript ?? ''}" (${seconds(heard?.durationSeconds ?? 0)} transcribed)`,
    );
    say(
      `${'agent'.padStart(6)} said   ${replies.join(' ')} (${name} heard ${seconds(answer.audibleSec)}, ` +
        `first sound ${Math.round(answer.firstAudibleAt - said.endedAt)} ms after the end of the file)`,
    );
  }

  say('\nRecordings of what each caller heard:');
  for (const [identity, caller] of callers) {
    const recording = await caller.leave();
    say(`  ${identity}: ${path.relative(process.cwd(), recording.file)} (${seconds(recording.durationSec)})`);
  }
  callers.clear();
  say(`\n${await memoryTable(await stack.memory(), [ALICE, BOB])}`);
} catch (error) {
  process.stderr.write(`demo: ${(error as Error).message}\n`);
  if (stack) process.stderr.write(`worker log (last lines):\n${stack.workerLog.slice(-15).join('\n')}\n`);
  process.exitCode = 1;
} finally {
  for (const caller of callers.values()) await caller.leave().catch(() => {});
  await stack?.stop();
  await releaseLiveKitClients();
}
