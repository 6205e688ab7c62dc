/**
 * The worker's main process: owns the embedded database (when DATABASE_URL is not set) and serves
 * it to the job processes, applies migrations once, and runs the LiveKit worker with explicit
 * dispatch under LIVEKIT_AGENT_NAME.
 * Run: node dist/agent/main.js (production), or `npm start` from a checkout (starts a local
 * livekit-server too when none answers).
 */
import http from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { AgentServer, ServerOptions, initializeLogger } from '@livekit/agents';
import { redactText, redactUrl, secretsOf, type MemoryStore } from '../memory/index.js';
import { serveMemory } from '../plugins/index.js';
import { loadWorkerConfig, type WorkerConfig } from './config.js';
import { loadVoiceModels } from './voice.js';

export interface RunningWorker {
  config: WorkerConfig;
  memory: MemoryStore;
  server: AgentServer;
  /** The port of GET /health on 127.0.0.1. */
  healthPort: number;
  /** http://127.0.0.1:<healthPort>/health */
  healthUrl: string;
  close(): Promise<void>;
}

type MemoryHealth = Awaited<ReturnType<MemoryStore['health']>>;

/** What GET /health answers (always HTTP 200 while the process is up: read `status`). */
export interface WorkerHealth {
  /** 'degraded' when memory is down (sessions run without it) or the worker is not registered with LiveKit. */
  status: 'ok' | 'degraded';
  livekit: { registered: boolean };
  memory: MemoryHealth;
}

export interface RunWorkerOptions {
  env?: NodeJS.ProcessEnv;
  /** Called with progress lines (default: nothing). */
  onProgress?: (line: string) => void;
  logLevel?: string;
  /** Port of the health endpoint on 127.0.0.1 (default AGENT_HEALTH_PORT, else 0: any free port). */
  healthPort?: number;
}

/** A port that was free a moment ago on loopback (for the AgentServer's own HTTP server, which we probe). */
async function freeLoopbackPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Whether the AgentServer is connected to LiveKit and registered right now: its own HTTP server
 * answers 200 "OK" on / only then (and 503 "not connected to livekit" while it reconnects).
 */
async function livekitRegistered(agentHttpPort: number, registeredOnce: boolean): Promise<boolean> {
  if (!registeredOnce) return false;
  try {
    const response = await fetch(`http://127.0.0.1:${agentHttpPort}/`, { signal: AbortSignal.timeout(1000) });
    return response.ok;
  } catch {
    return false;
  }
}

/** memory.health(), bounded: a database that takes longer than `timeoutMs` is reported down. */
async function memoryHealth(memory: MemoryStore, timeoutMs: number): Promise<MemoryHealth> {
  let timer: NodeJS.Timeout | undefined;
  const clock = new Promise<MemoryHealth>((resolve) => {
    timer = setTimeout(
      () =>
        resolve({
          state: 'down',
          backend: memory.backend,
          latencyMs: timeoutMs,
          error: `TIMEOUT: no answer within ${timeoutMs} ms`,
        }),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([memory.health(), clock]);
  } finally {
    clearTimeout(timer);
  }
}

async function startHealthServer(port: number, check: () => Promise<WorkerHealth>): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path !== '/health') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /health\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    check().then(
      (health) => {
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : `${JSON.stringify(health)}\n`);
      },
      (error: unknown) => {
        res
          .writeHead(500, { 'content-type': 'text/plain' })
          .end(`health check failed: ${redactText((error as Error).message)}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
  return server;
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** The job entry file next to this one, as .ts from a checkout (tsx) or .js from dist/. */
export function jobEntryPath(): string {
  const extension = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return fileURLToPath(new URL(`./job${extension}`, import.meta.url));
}

/** /health as served: the backend's location and any error message without credentials. */
function redactHealth(health: WorkerHealth, secrets: string[]): WorkerHealth {
  const memory = {
    ...health.memory,
    backend: { ...health.memory.backend, location: redactText(health.memory.backend.location, secrets) },
  };
  if (memory.error !== undefined) memory.error = redactText(memory.error, secrets);
  return { ...health, memory };
}

export async function runWorker(options: RunWorkerOptions = {}): Promise<RunningWorker> {
  // Progress lines and /health quote URLs and driver messages; the environment's keys and the
  // credentials inside its URLs are taken out of both.
  const secrets = secretsOf(options.env ?? process.env);
  const report = options.onProgress ?? (() => {});
  const progress = (line: string) => report(redactText(line, secrets));
  const config = loadWorkerConfig(options.env);
  if (config.speech) {
    // Refuse to start in voice mode without the VAD, instead of registering a worker whose
    // sessions never hear a turn end.
    progress(
      `voice: STT over ${config.speech.sttMode === 'realtime' ? 'the realtime websocket' : 'HTTP, cut by the VAD'}; loading the VAD...`,
    );
    loadVoiceModels();
  }
  initializeLogger({ pretty: false, level: options.logLevel ?? process.env.LOG_LEVEL ?? 'info' });

  // The owner of the embedded folder must exist before any job process asks for it.
  progress('opening the memory database (migrating if needed)...');
  const served = await serveMemory({ env: options.env });
  if (!served.store) throw new Error('runWorker runs in the worker main process, not in a job process');
  const memory = served.store;
  progress(`memory: ${memory.backend.location}`);

  let registeredOnce = false;
  const agentHttpPort = await freeLoopbackPort();
  let healthServer: http.Server;
  try {
    healthServer = await startHealthServer(options.healthPort ?? config.health.port, async () => {
      const [registered, memoryState] = await Promise.all([
        livekitRegistered(agentHttpPort, registeredOnce),
        memoryHealth(memory, config.memory.toolTimeoutMs),
      ]);
      return redactHealth(
        {
          status: registered && memoryState.state === 'up' ? 'ok' : 'degraded',
          livekit: { registered },
          memory: memoryState,
        },
        secrets,
      );
    });
  } catch (error) {
    await memory.close();
    throw error;
  }
  const healthPort = (healthServer.address() as net.AddressInfo).port;
  const healthUrl = `http://127.0.0.1:${healthPort}/health`;
  progress(`health: ${healthUrl}`);

  const server = new AgentServer(
    new ServerOptions({
      agent: jobEntryPath(),
      agentName: config.livekit.agentName,
      // AgentServer ignores LIVEKIT_URL when constructed in code, so pass it explicitly.
      wsURL: config.livekit.url,
      apiKey: config.livekit.apiKey,
      apiSecret: config.livekit.apiSecret,
      // Load is the share of job slots in use, not CPU. The default CPU measure reads over 0.7 on a
      // small machine while a job process starts, and livekit-server dispatches only to workers
      // below its target load (agents.target_load, default 0.7): new rooms then get "no servers
      // available" and no agent. A text or voice session is mostly waiting on the network anyway.
      loadFunc: (worker) => Promise.resolve(worker.activeJobs.length / config.livekit.maxJobs),
      loadThreshold: 1,
      // Warm job processes: without them every job waits for a process to start (config.ts).
      numIdleProcesses: config.livekit.idleProcesses,
      // The AgentServer's own HTTP server (/ and /worker); /health probes it for the connection state.
      host: '127.0.0.1',
      port: agentHttpPort,
      logLevel: options.logLevel ?? 'info',
    }),
  );
  const registered = new Promise<void>((resolve) =>
    server.event.once('worker_registered', () => {
      registeredOnce = true;
      resolve();
    }),
  );
  progress(`connecting to LiveKit at ${redactUrl(config.livekit.url)} as agent "${config.livekit.agentName}"...`);
  const running = server.run();
  const failed = running.then(
    () => Promise.reject(new Error('the LiveKit worker stopped before it registered')),
    (error: unknown) => Promise.reject(error instanceof Error ? error : new Error(String(error))),
  );
  try {
    await Promise.race([registered, failed]);
  } catch (error) {
    await closeServer(healthServer);
    await memory.close();
    throw error;
  }
  progress(
    `worker registered: dispatch jobs to agent "${config.livekit.agentName}" (text-only: ${config.speech ? 'no' : 'yes'})`,
  );

  let closing: Promise<void> | undefined;
  return {
    config,
    memory,
    server,
    healthPort,
    healthUrl,
    close: () =>
      (closing ??= (async () => {
        await closeServer(healthServer);
        await server.close();
        await memory.close();
      })()),
  };
}

async function main(): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(`Usage: node dist/agent/main.js

Runs the LiveKit worker with per-user memory. Configuration comes from the environment (see
.env.example): LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET, LIVEKIT_AGENT_NAME,
OPENAI_API_KEY / OPENAI_BASE_URL / LLM_MODEL, DATABASE_URL or MEMORY_DATA_DIR, MEMORY_BUDGET_MS,
MEMORY_TOOL_TIMEOUT_MS, AGENT_HEALTH_PORT (GET http://127.0.0.1:PORT/health; the port is printed),
MEMORY_PII_POLICY (refuse|redact|allow), MEMORY_PII_NATIONAL_ID_PATTERN, MEMORY_EXTRACT (on|off),
MEMORY_EXTRACT_TIMEOUT_MS.
Voice (with STT_MODEL/TTS_MODEL or OPENAI_API_KEY): STT_MODE (realtime|http), VAD_ACTIVATION_THRESHOLD,
VAD_MIN_SILENCE_MS, ENDPOINTING_MIN_DELAY_MS, ENDPOINTING_MAX_DELAY_MS, INTERRUPTIONS (on|off),
INTERRUPTION_MIN_MS; voice mode needs @livekit/local-inference (the VAD) and refuses to start without it.
From a checkout, \`npm start\` also starts a local livekit-server when none answers.
`);
    return;
  }
  const worker = await runWorker({ onProgress: (line) => process.stdout.write(`lk-memory-agent: ${line}\n`) });
  const stop = () => void worker.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((error: unknown) => {
    process.stderr.write(`lk-memory-agent: ${redactText((error as Error).message, secretsOf(process.env))}\n`);
    process.exit(1);
  });
}
