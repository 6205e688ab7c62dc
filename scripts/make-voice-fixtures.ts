/**
 * npm run fixtures:voice: regenerate the speech WAV files the voice caller plays in tests and the
 * demo (test/fixtures/audio/*.wav), with espeak-ng and sox.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { readWavFile, requireFormat, wavDurationSec } from './lib/wav.js';

const run = promisify(execFile);

export const VOICE_FIXTURES: Record<string, string> = {
  'alice-teal.wav': 'remember my favorite color is teal',
  'bob-question.wav': 'what is my favorite color',
  'alice-question.wav': 'what is my favorite color',
  'interrupt.wav': 'wait, stop, actually',
  'smalltalk.wav': 'tell me something nice about today',
};

const HELP = `Usage: npm run fixtures:voice -- [options]

Writes short speech WAV files (48 kHz mono 16-bit PCM, the format the voice caller sends) with
espeak-ng (voice en-us, 160 words a minute) and sox:
${Object.entries(VOICE_FIXTURES)
  .map(([file, text]) => `  ${file.padEnd(20)} "${text}"`)
  .join('\n')}

Options:
  --out <dir>   where to write them (default test/fixtures/audio)
  -h, --help    this text

Needs espeak-ng and sox on the PATH (Debian/Ubuntu: apt-get install -y espeak-ng sox;
macOS: brew install espeak-ng sox).
`;

async function need(command: string, args: string[]): Promise<void> {
  try {
    await run(command, args);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(
        `${command} is not installed. Install espeak-ng and sox (Debian/Ubuntu: apt-get install -y espeak-ng sox; macOS: brew install espeak-ng sox).`,
      );
    }
    throw error;
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { out: { type: 'string', default: 'test/fixtures/audio' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  await need('espeak-ng', ['--version']);
  await need('sox', ['--version']);
  const out = path.resolve(values.out);
  await mkdir(out, { recursive: true });
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'voice-fixtures-'));
  try {
    for (const [file, text] of Object.entries(VOICE_FIXTURES)) {
      const raw = path.join(tmp, file);
      const final = path.join(out, file);
      await run('espeak-ng', ['-v', 'en-us', '-s', '160', '-w', raw, text]);
      await run('sox', ['-D', raw, '-r', '48000', '-c', '1', '-b', '16', '-e', 'signed-integer', final]);
      const audio = requireFormat(await readWavFile(final), 48_000, 1, final);
      process.stdout.write(`${path.relative(process.cwd(), final)}: ${wavDurationSec(audio).toFixed(2)} s "${text}"\n`);
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
