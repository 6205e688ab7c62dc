/**
 * The job entry: LiveKit Agents forks a process per job and imports this file; its default export
 * runs one session for the participant who joined.
 */
import { AutoSubscribe, defineAgent, log, voice, type JobContext, type JobProcess } from '@livekit/agents';
import * as openai from '@livekit/agents-plugin-openai';
import { TENANT_PATTERN, openMemory, type MemoryStore } from '../memory/index.js';
import { memoryInstructions, startUserMemory, type UserMemorySession } from '../plugins/index.js';
import { loadWorkerConfig, type WorkerConfig } from './config.js';

interface ProcessData {
  memory?: MemoryStore;
  memoryError?: Error;
}

const UNAVAILABLE_NOTICE =
  "Hi! Just so you know, my memory is unavailable right now, so I can't remember anything from before and won't remember this conversation.";

function greetingInstructions(memory: UserMemorySession & { available: true }): string {
  return memory.firstSession
    ? 'This is your first conversation with this user: greet them as someone new, introduce yourself in one sentence and ask how you can help.'
    : `This user is returning (conversation number ${memory.user.sessionCount}): welcome them back as someone you know. ` +
        'If you remember something relevant about them, you may mention it briefly.';
}

/** What this user's stored settings change for their session. */
interface SessionChoices {
  model: string;
  voice: string | undefined;
  instructionsAddendum: string | undefined;
  userId: string | undefined;
}

function choicesFor(config: WorkerConfig, memory: UserMemorySession): SessionChoices {
  const settings = memory.available ? memory.settings?.config : undefined;
  return {
    model: settings?.model ?? config.llm.model,
    voice: settings?.voice ?? config.speech?.voice,
    instructionsAddendum: settings?.instructions,
    userId: memory.available ? memory.user.id : undefined,
  };
}

/**
 * The tenant whose settings apply: the dispatch metadata's {"tenant": "..."} when the backend that
 * minted the token or dispatch set one (only it can), else MEMORY_TENANT, else "default".
 */
export function tenantFromMetadata(metadata: string): string | undefined {
  if (!metadata) return undefined;
  try {
    const tenant = (JSON.parse(metadata) as { tenant?: unknown }).tenant;
    return typeof tenant === 'string' && TENANT_PATTERN.test(tenant) ? tenant : undefined;
  } catch {
    return undefined;
  }
}

function buildSession(config: WorkerConfig, choices: SessionChoices): voice.AgentSession {
  // `user` is OpenAI's end-user identifier for abuse monitoring: the pseudonymous UUIDv5, never
  // the identity itself.
  const llm = new openai.LLM({ apiKey: config.llm.apiKey, baseURL: config.llm.baseURL, model: choices.model, user: choices.userId });
  if (!config.speech) {
    // Text only: no VAD and no turn detector, which would otherwise load local models or call
    // LiveKit Cloud; chat arrives on lk.chat and replies leave on lk.transcription.
    return new voice.AgentSession({ llm, vad: null, turnHandling: { turnDetection: null } });
  }
  const common = { apiKey: config.llm.apiKey, baseURL: config.llm.baseURL };
  return new voice.AgentSession({
    llm,
    stt: new openai.STT({ ...common, model: config.speech.sttModel }),
    tts: new openai.TTS({ ...common, model: config.speech.ttsModel, ...(choices.voice ? { voice: choices.voice as never } : {}) }),
  });
}

export async function runMemoryAgent(ctx: JobContext<ProcessData>): Promise<void> {
  const logger = log().child({ job: ctx.job.id, room: ctx.room.name });
  const config = loadWorkerConfig();
  await ctx.connect(undefined, config.speech ? AutoSubscribe.AUDIO_ONLY : AutoSubscribe.SUBSCRIBE_NONE);
  const participant = await ctx.waitForParticipant();

  const store = await processMemory(ctx.proc);
  const memory: UserMemorySession = store
    ? await startUserMemory({
        memory: store,
        participant,
        identitySource: config.memory.identitySource,
        memoryLimit: config.memory.blockMaxEntries,
        block: { maxEntries: config.memory.blockMaxEntries, maxChars: config.memory.blockMaxChars },
        tools: { categories: config.memory.categories },
        tenant: tenantFromMetadata(ctx.job.metadata),
      })
    : { available: false, identity: undefined, error: ctx.proc.userData.memoryError ?? new Error('memory not opened'), memoryBlock: '', tools: {} };

  if (memory.available) {
    // Ids and counts only: memory values never go to logs.
    logger.info(
      {
        userId: memory.user.id,
        firstSession: memory.firstSession,
        memories: memory.memories.length,
        settings: memory.settings ? { tenant: memory.settings.tenant, version: memory.settings.version } : null,
      },
      'memory ready for participant',
    );
  } else {
    logger.error({ participant: participant.identity, error: memory.error.message }, 'memory unavailable: continuing without it');
  }

  const choices = choicesFor(config, memory);
  const addendum = choices.instructionsAddendum ? `\n\nAdditional instructions for this user:\n${choices.instructionsAddendum}` : '';
  const agent = new voice.Agent({
    instructions: `${config.instructions}${addendum}\n\n${memoryInstructions(memory)}`,
    tools: memory.available ? memory.tools : undefined,
  });
  const session = buildSession(config, choices);
  session.on(voice.AgentSessionEventTypes.Close, () => ctx.shutdown('session closed'));
  await session.start({
    agent,
    room: ctx.room,
    // Only the participant this job is for may talk to it; their memory is the one loaded.
    inputOptions: { participantIdentity: participant.identity, audioEnabled: Boolean(config.speech), textEnabled: true },
    outputOptions: { audioEnabled: Boolean(config.speech), transcriptionEnabled: true },
  });

  if (memory.available) session.generateReply({ instructions: greetingInstructions(memory) });
  else session.say(UNAVAILABLE_NOTICE);
}

/**
 * One store per job process, shared by its jobs: a small PostgreSQL pool, or a client of the
 * embedded database that the worker's main process owns and serves. Migrations are the main
 * process's job. A failed open is retried by the next job instead of being remembered forever.
 */
async function processMemory(proc: JobProcess<ProcessData>): Promise<MemoryStore | undefined> {
  if (proc.userData.memory) return proc.userData.memory;
  try {
    proc.userData.memory = await openMemory({ embeddedRole: 'client', migrate: false, maxConnections: 2, embeddedWaitMs: 3000 });
    proc.userData.memoryError = undefined;
  } catch (error) {
    proc.userData.memoryError = error as Error;
  }
  return proc.userData.memory;
}

export default defineAgent<ProcessData>({
  prewarm: async (proc: JobProcess<ProcessData>) => {
    await processMemory(proc);
  },
  entry: runMemoryAgent,
});
