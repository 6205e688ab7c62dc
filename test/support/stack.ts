import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { dispose } from '@livekit/rtc-node';
import { openMemory, type MemoryStore } from '../../memory/index.js';
import { ChatParticipant } from '../../scripts/lib/chat-participant.js';
import { VoiceCaller } from '../../scripts/lib/voice-caller.js';
import { startLivekitServerOnFreePorts } from '../../scripts/livekit/free-ports-server.js';
import type { LivekitServerHandle } from '../../scripts/livekit/server.js';
import { ScriptedOpenAI } from './openai-standin.js';
import { ROOT, cleanEnv } from './processes.js';

/**
 * Everything an end-to-end run needs, all real but the model: a livekit-server on loopback, the
 * worker as its own process (which owns the embedded database and forks job processes), and the
 * scripted OpenAI-compatible stand-in that records what the model was shown.
 */
export interface Stack {
  livekit: LivekitServerHandle;
  /** The scripted stand-in; undefined when the worker talks to a real model (realModel). */
  model: ScriptedOpenAI;
  worker: ChildProcess;
  workerLog: string[];
  dataDir: string;
  agentName: string;
  /** The worker's health endpoint, from its "health: <url>" progress line. */
  healthUrl?: string;
  /** Join a fresh room (which dispatches the agent, with this dispatch metadata) as this identity. */
  join(identity: string, room?: string, metadata?: string): Promise<ChatParticipant>;
  /**
   * Call in a fresh room as this identity, by voice (a VoiceCaller: real audio in and out, its
   * recording written to outDir when it leaves). The caller leaves it; stop() does too.
   */
  voiceCall(identity: string, outDir: string, room?: string): Promise<VoiceCaller>;
  /** A client of the worker's embedded database, for checking what was stored. */
  memory(): Promise<MemoryStore>;
  stop(): Promise<void>;
}

export interface StackOptions {
  onProgress?: (line: string) => void;
  /** Extra environment for the worker (e.g. DATABASE_URL, or OPENAI_* for a real model). */
  env?: NodeJS.ProcessEnv;
  /** The scripted model; one already listening is shared (the caller starts and stops it). */
  model?: ScriptedOpenAI;
  /** A running livekit-server to register with, shared with other stacks (the caller stops it). */
  livekit?: LivekitServerHandle;
  /** Embedded data folder to use and keep (default: a temporary one, removed on stop). */
  dataDir?: string;
  /**
   * Another worker to run instead of this repository's (agent/main.ts): e.g. the example project,
   * installed from the packed package. `ready` matches the output line that says it registered.
   */
  worker?: { command: string; args: string[]; cwd: string; ready: RegExp };
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const progress = options.onProgress ?? (() => {});
  const model = options.model ?? new ScriptedOpenAI();
  const ownsModel = !model.listening;
  if (ownsModel) await model.start();
  const ownsLivekit = !options.livekit;
  if (ownsLivekit) progress('starting livekit-server...');
  const livekit = options.livekit ?? (await startLivekitServerOnFreePorts({ onProgress: progress }));
  const stopShared = async () => {
    if (ownsLivekit) await livekit.stop();
    if (ownsModel) await model.stop();
  };
  const dataDir = path.resolve(options.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'lkm-e2e-')));
  const agentName = `memory-agent-${randomBytes(3).toString('hex')}`;
  const env = cleanEnv({
    LIVEKIT_URL: livekit.url,
    LIVEKIT_API_KEY: livekit.apiKey,
    LIVEKIT_API_SECRET: livekit.apiSecret,
    LIVEKIT_AGENT_NAME: agentName,
    OPENAI_BASE_URL: model.baseURL,
    OPENAI_API_KEY: '',
    LLM_MODEL: 'scripted',
    AGENT_MODE: 'text',
    // Generous by default so that a loaded CI machine cannot turn a returning user into a late one;
    // the budget tests set their own.
    MEMORY_BUDGET_MS: '10000',
    MEMORY_DATA_DIR: dataDir,
    ...options.env,
  });
  progress('starting the worker...');
  const command = options.worker ?? {
    command: process.execPath,
    args: ['--import', 'tsx', path.join(ROOT, 'agent/main.ts')],
    cwd: ROOT,
    ready: /worker registered/,
  };
  const worker = spawn(command.command, command.args, { cwd: command.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const workerLog: string[] = [];
  let healthUrl: string | undefined;
  readline.createInterface({ input: worker.stderr }).on('line', (line) => workerLog.push(line));
  const ready = new Promise<void>((resolve, reject) => {
    readline.createInterface({ input: worker.stdout }).on('line', (line) => {
      workerLog.push(line);
      healthUrl ??= /\bhealth: (http:\/\/\S+)/.exec(line)?.[1];
      if (command.ready.test(line)) resolve();
    });
    worker.once('exit', (code) =>
      reject(new Error(`the worker exited (${code}) before it registered:\n${workerLog.slice(-30).join('\n')}`)),
    );
  });
  const timeout = setTimeout(() => worker.kill('SIGKILL'), 60_000);
  try {
    await ready;
  } catch (error) {
    await stopShared();
    throw error;
  } finally {
    clearTimeout(timeout);
  }
  progress(`worker registered as ${agentName}`);

  const participants: Array<ChatParticipant | VoiceCaller> = [];
  let store: MemoryStore | undefined;
  return {
    livekit,
    model,
    worker,
    workerLog,
    dataDir,
    agentName,
    healthUrl,
    async join(identity, room = `room-${randomBytes(4).toString('hex')}`, metadata) {
      const participant = await ChatParticipant.join(livekit.url, {
        apiKey: livekit.apiKey,
        apiSecret: livekit.apiSecret,
        identity,
        room,
        agentName,
        metadata,
      });
      participants.push(participant);
      return participant;
    },
    async voiceCall(identity, outDir, room = `voice-${randomBytes(4).toString('hex')}`) {
      const caller = await VoiceCaller.join({
        url: livekit.url,
        token: { apiKey: livekit.apiKey, apiSecret: livekit.apiSecret, identity, room, agentName },
        outDir,
      });
      participants.push(caller);
      return caller;
    },
    async memory() {
      // The same backend the worker uses: its embedded socket, or DATABASE_URL when given.
      store ??= await openMemory({ env, embeddedRole: 'client', migrate: false });
      return store;
    },
    async stop() {
      for (const p of participants) await p.leave().catch(() => {});
      await store?.close();
      worker.kill('SIGTERM');
      await new Promise<void>((resolve) => {
        if (worker.exitCode !== null || worker.signalCode !== null) return resolve();
        const force = setTimeout(() => worker.kill('SIGKILL'), 10_000);
        worker.once('exit', () => {
          clearTimeout(force);
          resolve();
        });
      });
      await stopShared();
      if (!options.dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Release rtc-node's native resources so the process can exit. */
export async function releaseLiveKitClients(): Promise<void> {
  await dispose();
}
