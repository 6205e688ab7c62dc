/**
 * Starts a real livekit-server on loopback for development (`npm run livekit`) and tests
 * (`startLivekitServer({ port })`), configured by the repository's livekit.yaml.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LivekitServerError } from './errors.js';
import { ensureLivekitServer } from './install.js';
import { isMain } from './main.js';
import { isTcpPortFree } from './ports.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DEFAULT_CONFIG_PATH = path.join(ROOT, 'livekit.yaml');
export const DEFAULT_PORT = 7880;
export const API_KEY = 'devkey';
export const API_SECRET = 'secret';

export interface StartLivekitServerOptions {
  /** HTTP/WebSocket port. Given: it and the ICE ports (default port+1 TCP, port+2 UDP) override livekit.yaml. */
  port?: number;
  rtcTcpPort?: number;
  rtcUdpPort?: number;
  /** Default: livekit.yaml at the repository root. */
  configPath?: string;
  /** Where the server's stdout and stderr go. Default: a new file in the temp folder. */
  logFile?: string;
  /** Install progress (a first run builds the server) and startup notes. */
  onProgress?: (line: string) => void;
  /** How long to wait for GET / to answer 200. Default 30 s. */
  readyTimeoutMs?: number;
}

export interface LivekitServerHandle {
  /** ws://127.0.0.1:PORT, for LIVEKIT_URL and rtc-node. */
  url: string;
  /** http://127.0.0.1:PORT, for RoomServiceClient and other API clients. */
  httpUrl: string;
  apiKey: typeof API_KEY;
  apiSecret: typeof API_SECRET;
  pid: number;
  logFile: string;
  /** Settles when the process has exited, for whatever reason. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then a second (forcing) SIGTERM, then SIGKILL; resolves once the process is gone. Idempotent. */
  stop(): Promise<void>;
}

/** The top-level `port:` of a livekit.yaml (a column-0 key cannot be anything else), else 7880. */
export function configuredPort(yaml: string): number {
  const match = /^port:\s*(\d+)\s*(?:#.*)?$/m.exec(yaml);
  return match ? Number(match[1]) : DEFAULT_PORT;
}

/** True when GET / answers 200: livekit-server says 406 until its node stats are fresh. */
export async function isLivekitServerUp(httpUrl: string): Promise<boolean> {
  try {
    const response = await fetch(new URL('/', httpUrl), { signal: AbortSignal.timeout(2000) });
    await response.body?.cancel();
    return response.status === 200;
  } catch {
    return false;
  }
}

export async function startLivekitServer(options: StartLivekitServerOptions = {}): Promise<LivekitServerHandle> {
  const binary = await ensureLivekitServer(options.onProgress ? { onProgress: options.onProgress } : {});
  const configPath = path.resolve(options.configPath ?? DEFAULT_CONFIG_PATH);
  const configText = await readFile(configPath, 'utf8').catch((error: Error) => {
    throw new LivekitServerError(
      'INVALID_CONFIG',
      `Cannot read the livekit-server configuration ${configPath} (${error.message}). Restore livekit.yaml at the repository root or pass configPath.`,
    );
  });

  const port = options.port ?? configuredPort(configText);
  const httpUrl = `http://127.0.0.1:${port}`;
  // A server already on the port would answer our health check and hide the new one's bind failure.
  if (!(await isTcpPortFree(port))) {
    const what = (await isLivekitServerUp(httpUrl))
      ? 'a livekit-server is already running there'
      : 'something else is listening there';
    throw new LivekitServerError(
      'PORT_IN_USE',
      `Port ${port} on 127.0.0.1 is taken (${what}). Stop it, or start this server on another port.`,
    );
  }

  const args = ['--config', configPath, '--keys', `${API_KEY}: ${API_SECRET}`];
  if (options.port !== undefined) {
    // Hidden flags generated from the config struct (see `livekit-server help-verbose`); they win over the file.
    args.push(
      '--port',
      String(port),
      '--rtc.tcp_port',
      String(options.rtcTcpPort ?? port + 1),
      '--udp-port',
      String(options.rtcUdpPort ?? port + 2),
    );
  }

  const logFile =
    options.logFile ?? path.join(os.tmpdir(), `livekit-server-${port}-${randomBytes(4).toString('hex')}.log`);
  const fd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(binary, args, { env: serverEnv(process.env), stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null)
      resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  // A test runner that dies without stop() must not leave a server holding the ports.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const stop = memoize(async () => {
    process.removeListener('exit', killOnExit);
    await stopProcess(child, exited);
  });

  try {
    await waitUntilUp(httpUrl, options.readyTimeoutMs ?? 30_000, exited, spawnError, child, logFile);
  } catch (error) {
    await stop();
    throw error;
  }
  options.onProgress?.(`livekit-server ${child.pid} is up on ${httpUrl} (log: ${logFile})`);
  return {
    url: `ws://127.0.0.1:${port}`,
    httpUrl,
    apiKey: API_KEY,
    apiSecret: API_SECRET,
    pid: child.pid!,
    logFile,
    exited,
    stop,
  };
}

/**
 * livekit-server reads many environment variables as settings (LIVEKIT_CONFIG replaces the
 * --config file entirely; LIVEKIT_KEYS, LIVEKIT_PORT, NODE_IP, UDP_PORT, REDIS_HOST, ...). A
 * developer's shell may hold some of them for LiveKit Cloud; only livekit.yaml and our flags count.
 */
function serverEnv(parent: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  const foreign = new Set(['NODE_IP', 'UDP_PORT', 'REDIS_HOST', 'REDIS_PASSWORD']);
  for (const [name, value] of Object.entries(parent)) {
    if (name.startsWith('LIVEKIT_') || foreign.has(name)) continue;
    env[name] = value;
  }
  return env;
}

async function waitUntilUp(
  httpUrl: string,
  timeoutMs: number,
  exited: Promise<unknown>,
  spawnError: Promise<Error>,
  child: ChildProcess,
  logFile: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let done: 'exited' | Error | undefined;
  void exited.then(() => (done ??= 'exited'));
  void spawnError.then((error) => (done ??= error));
  while (Date.now() < deadline) {
    if (done instanceof Error) {
      throw new LivekitServerError(
        'START_FAILED',
        `livekit-server could not be started: ${done.message}. Check the binary (npm run livekit:install).`,
        { cause: done },
      );
    }
    if (done === 'exited') {
      throw new LivekitServerError(
        'START_FAILED',
        `livekit-server exited (code ${child.exitCode}, signal ${child.signalCode}) before it was ready. ` +
          `Its log (${logFile}) ends with:\n${await tailOf(logFile)}`,
      );
    }
    if (await isLivekitServerUp(httpUrl)) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new LivekitServerError(
    'START_TIMEOUT',
    `livekit-server did not answer 200 on ${httpUrl}/ within ${timeoutMs / 1000} s. Its log (${logFile}) ends with:\n${await tailOf(logFile)}`,
  );
}

async function stopProcess(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  // No pid: spawn itself failed, there is nothing to stop.
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  // The first SIGTERM drains: livekit-server waits for every participant to leave, without limit.
  // A second SIGTERM skips that wait. SIGKILL is for a server that does not react at all.
  const steps: Array<[NodeJS.Signals, number]> = [
    ['SIGTERM', 3000],
    ['SIGTERM', 3000],
    ['SIGKILL', 10_000],
  ];
  for (const [signal, waitMs] of steps) {
    child.kill(signal);
    if (await settlesWithin(exited, waitMs)) return;
  }
  throw new LivekitServerError('START_FAILED', `livekit-server ${child.pid} survived SIGKILL; kill it by hand.`);
}

async function tailOf(file: string, bytes = 4000): Promise<string> {
  try {
    const handle = await open(file, 'r');
    try {
      const { size } = await handle.stat();
      const start = Math.max(0, size - bytes);
      const buffer = Buffer.alloc(size - start);
      await handle.read(buffer, 0, buffer.length, start);
      return buffer.toString('utf8').trimEnd() || '(empty)';
    } finally {
      await handle.close();
    }
  } catch (error) {
    return `(could not read it: ${(error as Error).message})`;
  }
}

async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(resolve, ms, false)));
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function memoize<T>(fn: () => Promise<T>): () => Promise<T> {
  let promise: Promise<T> | undefined;
  return () => (promise ??= fn());
}

const HELP = `Usage: npm run livekit [-- --port <n>] [-- --log-file <path>]

Runs a local livekit-server in the foreground with livekit.yaml (loopback only) and prints the
URL, API key and secret. Ctrl-C stops it. The first run may build the server from source with Go
(see npm run livekit:install -- --help).

  --port <n>        HTTP/WebSocket port (default ${DEFAULT_PORT}); ICE uses <n>+1 (TCP) and <n>+2 (UDP)
  --config <path>   another config file (default livekit.yaml)
  --log-file <path> where the server's output goes (default: a temp file, printed at start)
`;

function parseArgs(args: string[]): StartLivekitServerOptions | 'help' {
  const options: StartLivekitServerOptions = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--help' || arg === '-h') return 'help';
    const value = args[++i];
    if (value === undefined) throw new LivekitServerError('INVALID_CONFIG', `${arg} needs a value.\n${HELP}`);
    if (arg === '--port') {
      const port = Number(value);
      if (!Number.isInteger(port) || port < 1 || port > 65533)
        throw new LivekitServerError('INVALID_CONFIG', `--port must be a port number, not ${value}.`);
      options.port = port;
    } else if (arg === '--config') options.configPath = value;
    else if (arg === '--log-file') options.logFile = value;
    else throw new LivekitServerError('INVALID_CONFIG', `Unknown argument: ${arg}\n${HELP}`);
  }
  return options;
}

async function main(): Promise<void> {
  const parsed = parseArgs(process.argv.slice(2));
  if (parsed === 'help') {
    process.stdout.write(HELP);
    return;
  }
  const server = await startLivekitServer({ ...parsed, onProgress: (line) => process.stderr.write(`${line}\n`) });
  process.stdout.write(
    [
      `livekit-server is running (pid ${server.pid}).`,
      `  LIVEKIT_URL=${server.url}`,
      `  LIVEKIT_API_KEY=${server.apiKey}`,
      `  LIVEKIT_API_SECRET=${server.apiSecret}`,
      `  log: ${server.logFile}   (tail -f it to watch)`,
      'Ctrl-C stops it.',
      '',
    ].join('\n'),
  );
  let stopping = false;
  const shutdown = () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('Stopping livekit-server...\n');
    void server.stop().then(() => process.stdout.write('Stopped.\n'));
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
  void server.exited.then(({ code, signal }) => {
    if (stopping) return;
    process.stderr.write(`livekit-server exited on its own (code ${code}, signal ${signal}); see ${server.logFile}\n`);
    process.exitCode = 1;
  });
}

if (isMain(import.meta.url)) {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof LivekitServerError ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}
