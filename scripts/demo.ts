/**
 * npm run demo: the offline showcase. A local livekit-server, the worker, and two scripted users
 * (alice and bob) who talk to the agent over text in their own rooms at the same time; then both
 * transcripts and what each user's memory holds.
 */
import '../test/support/quiet-rtc.js';
import path from 'node:path';
import { demoScript } from '../test/support/demo-script.js';
import { releaseLiveKitClients, startStack, type Stack } from '../test/support/stack.js';
import type { ChatParticipant } from './lib/chat-participant.js';
import { memoryTable } from './lib/memory-table.js';

const HELP = `Usage: npm run demo [-- --voice]

The offline showcase. Starts a local livekit-server (built from source with Go on first use), the
memory worker, and two scripted users, alice@example.com and bob@example.com, who chat with the
agent over text in their own rooms at the same time. Prints both transcripts and a table of what
each user's memory holds.

Memory: DATABASE_URL when set, else the embedded database in MEMORY_DATA_DIR (default .data/), so a
second run greets both users as returning. Model: OPENAI_API_KEY (and optional OPENAI_BASE_URL,
LLM_MODEL) when set; otherwise the scripted OpenAI-compatible stand-in from test/support/, which
follows a fixed script and says so.

--voice: the same two users speak instead (real audio through livekit-server, see
npm run demo -- --voice --help).
`;

const CONVERSATIONS: Record<string, string[]> = {
  'alice@example.com': ['I like the colour blue', 'I live in Lisbon', 'What is my favourite colour?'],
  'bob@example.com': ['What is my favourite colour?', 'My favourite colour is green', 'What do you remember about me?'],
};

if (process.argv.includes('--voice')) {
  await import('./demo-voice.js');
  process.exit(process.exitCode ?? 0);
}
if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(HELP);
  process.exit(0);
}

const say = (line: string) => process.stdout.write(`${line}\n`);
const realModel = Boolean(process.env.OPENAI_API_KEY);

say(
  realModel
    ? `Model: ${process.env.OPENAI_BASE_URL ?? 'OpenAI'} (${process.env.LLM_MODEL ?? 'gpt-4.1-mini'}).`
    : 'No OPENAI_API_KEY: the agent talks to the scripted OpenAI-compatible stand-in from test/support/.\n' +
        'It follows a fixed script for this demo; it is not a language model. Everything else is real:\n' +
        'livekit-server, the worker and its job processes, the LiveKit clients and the database.',
);

let stack: Stack | undefined;
try {
  stack = await startStack({
    onProgress: (line) => say(`  ${line}`),
    dataDir: path.resolve(process.env.MEMORY_DATA_DIR || '.data'),
    env: {
      ...(process.env.DATABASE_URL ? { DATABASE_URL: process.env.DATABASE_URL } : {}),
      ...(realModel
        ? {
            OPENAI_API_KEY: process.env.OPENAI_API_KEY,
            OPENAI_BASE_URL: process.env.OPENAI_BASE_URL ?? '',
            LLM_MODEL: process.env.LLM_MODEL ?? '',
          }
        : {}),
    },
  });
  stack.model.setResponder(demoScript);

  say('\nalice and bob join their own rooms and talk to the agent at the same time...');
  const talk = async (identity: string): Promise<ChatParticipant> => {
    const participant = await stack!.join(identity, `demo-${identity.split('@')[0]}-${Date.now()}`);
    await participant.waitForGreeting();
    for (const line of CONVERSATIONS[identity]!) await participant.say(line);
    await participant.leave();
    return participant;
  };
  const participants = await Promise.all(Object.keys(CONVERSATIONS).map(talk));

  for (const p of participants) {
    say(`\n── ${p.identity} ──`);
    for (const line of p.transcript) {
      const who = line.from === 'user' ? p.identity.split('@')[0]! : 'agent';
      say(`${who.padStart(6)}: ${line.text.replace(/\n/g, `\n${' '.repeat(8)}`)}`);
    }
  }

  say(`\n${await memoryTable(await stack.memory(), Object.keys(CONVERSATIONS))}`);
} catch (error) {
  process.stderr.write(`demo: ${(error as Error).message}\n`);
  if (stack) process.stderr.write(`worker log (last lines):\n${stack.workerLog.slice(-15).join('\n')}\n`);
  process.exitCode = 1;
} finally {
  await stack?.stop();
  await releaseLiveKitClients();
}
