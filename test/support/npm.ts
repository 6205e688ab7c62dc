import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { ROOT, cleanEnv } from './processes.js';

const run = promisify(execFile);

/** npm with the test environment (no DATABASE_URL or MEMORY_DATA_DIR of ours); its stdout. */
export async function npm(args: string[], cwd: string): Promise<string> {
  return (await run('npm', args, { cwd, env: cleanEnv(), maxBuffer: 64 * 1024 * 1024 })).stdout;
}

/**
 * `npm pack` of this repository into `destination`; the tarball's path. prepack rebuilds dist/
 * (clean, then tsc), so two test files packing at once would delete each other's build: a lock
 * folder lets one pack at a time.
 */
export async function packThisPackage(destination: string): Promise<string> {
  const lock = path.join(ROOT, '.pack-lock');
  const deadline = Date.now() + 300_000;
  for (;;) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  try {
    const packed = JSON.parse(await npm(['pack', '--json', '--pack-destination', destination], ROOT)) as {
      filename: string;
    }[];
    return path.join(destination, packed[0]!.filename);
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}
