/**
 * The worker's main process: owns the embedded database (when DATABASE_URL is not set) and serves
 * it to the job processes, applies migrations once, and runs the LiveKit worker with explicit
 * dispatch under LIVEKIT_AGENT_NAME.
 * Run: node dist/agent/main.js (production), or `npm start` from a checkout (starts a local
 * livekit-server too when none answers).
 */
import { fileURLToPath } from 'node:url';
import { AgentServer, ServerOptions, initializeLogger } from '@livekit/agents';
import { openMemory, type MemoryStore } from '../memory/index.js';
import { loadWorkerConfig, type WorkerConfig } from './config.js';

export interface RunningWorker {
  config: WorkerConfig;
  memory: MemoryStore;
  server: AgentServer;
  close(): Promise<void>;
}

export interface RunWorkerOptions {
  env?: NodeJS.ProcessEnv;
  /** Called with progress lines (default: nothing). */
  onProgress?: (line: string) => void;
  logLevel?: string;
  /** Health and worker-info HTTP port (default 0: any free port). */
  healthPort?: number;
}

/** The job entry file next to this one, as .ts from a checkout (tsx) or .js from dist/. */
export function jobEntryPath(): string {
  const extension = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return fileURLToPath(new URL(`./job${extension}`, import.meta.url));
}

export async function runWorker(options: RunWorkerOptions = {}): Promise<RunningWorker> {
  const progress = options.onProgress ?? (() => {});
  const config = loadWorkerConfig(options.env);
  initializeLogger({ pretty: false, level: options.logLevel ?? process.env.LOG_LEVEL ?? 'info' });

  // The owner of the embedded folder must exist before any job process asks for it.
  progress('opening the memory database (migrating if needed)...');
  const memory = await openMemory({ env: options.env, embeddedRole: 'owner', serve: true });
  progress(`memory: ${memory.backend.location}`);

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
      loadFunc: async (worker) => worker.activeJobs.length / config.livekit.maxJobs,
      loadThreshold: 1,
      host: '127.0.0.1',
      port: options.healthPort ?? 0,
      logLevel: options.logLevel ?? 'info',
    }),
  );
  const registered = new Promise<void>((resolve) => server.event.once('worker_registered', () => resolve()));
  progress(`connecting to LiveKit at ${config.livekit.url} as agent "${config.livekit.agentName}"...`);
  const running = server.run();
  const failed = running.then(
    () => Promise.reject(new Error('the LiveKit worker stopped before it registered')),
    (error: unknown) => Promise.reject(error),
  );
  try {
    await Promise.race([registered, failed]);
  } catch (error) {
    await memory.close();
    throw error;
  }
  progress(`worker registered: dispatch jobs to agent "${config.livekit.agentName}" (text-only: ${config.speech ? 'no' : 'yes'})`);

  let closing: Promise<void> | undefined;
  return {
    config,
    memory,
    server,
    close: () =>
      (closing ??= (async () => {
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
OPENAI_API_KEY / OPENAI_BASE_URL / LLM_MODEL, DATABASE_URL or MEMORY_DATA_DIR.
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
    process.stderr.write(`lk-memory-agent: ${(error as Error).message}\n`);
    process.exit(1);
  });
}
