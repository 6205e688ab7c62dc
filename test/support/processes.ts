import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run a TypeScript entry point of this repository in a new Node process (via tsx) and collect its output. */
export function runTs(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  nodeOptions: string[] = [],
): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeOptions, '--import', 'tsx', path.join(ROOT, script), ...args], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** The CLI as a user runs it, in its own process. */
export function runCliProcess(args: string[], env: NodeJS.ProcessEnv): Promise<ProcessResult> {
  return runTs('scripts/lk-memory.ts', args, env);
}

/** An environment without the caller's database settings, so a test picks its backend explicitly. */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.DATABASE_URL;
  delete env.MEMORY_DATA_DIR;
  delete env.MEMORY_UUID_NAMESPACE;
  return { ...env, ...extra };
}

/** Start a long-running TypeScript process and wait for the first JSON line it prints on stdout. */
export async function startTs<T>(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ child: ChildProcess; first: T; stderr: () => string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, script), ...args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const lines = readline.createInterface({ input: child.stdout });
  const first = await new Promise<T>((resolve, reject) => {
    lines.once('line', (line) => resolve(JSON.parse(line) as T));
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code} before it was ready: ${stderr}`)));
  });
  return { child, first, stderr: () => stderr };
}

export function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/**
 * A long-running TypeScript process that answers one JSON line on stdout for each JSON line sent
 * on stdin (request/response, in order). Waits for its first line (readiness) before returning.
 */
export async function startInteractive(script: string, args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, script), ...args], {
    cwd: ROOT,
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const lines = readline.createInterface({ input: child.stdout });
  const waiting: Array<(line: string) => void> = [];
  const early: string[] = [];
  lines.on('line', (line) => {
    const next = waiting.shift();
    if (next) next(line);
    else early.push(line);
  });
  const nextLine = () =>
    new Promise<string>((resolve, reject) => {
      const ready = early.shift();
      if (ready !== undefined) return resolve(ready);
      waiting.push(resolve);
      child.once('exit', (code) => reject(new Error(`${script} exited with ${code}: ${stderr}`)));
    });
  const first = JSON.parse(await nextLine()) as unknown;
  return {
    child,
    first,
    stderr: () => stderr,
    /** Send one command and wait for its answer. */
    async send<T = unknown>(command: unknown): Promise<T> {
      child.stdin.write(`${JSON.stringify(command)}\n`);
      return JSON.parse(await nextLine()) as T;
    },
    async stop(): Promise<void> {
      child.stdin.end();
      child.kill('SIGTERM');
      await exited(child);
    },
  };
}
