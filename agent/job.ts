/**
 * The job entry: LiveKit Agents forks a process per job and imports this file; its default export
 * runs one session for the participant who joined.
 */
import { AutoSubscribe, defineAgent, log, voice, type JobContext, type JobProcess } from '@livekit/agents';
import * as openai from '@livekit/agents-plugin-openai';
import { TENANT_PATTERN, openMemory, type MemoryStore } from '../memory/index.js';
import {
  memoryInstructions,
  startUserMemory,
  type UserMemoryFailed,
  type UserMemoryLate,
  type UserMemoryReady,
  type UserMemorySession,
} from '../plugins/index.js';
import { loadWorkerConfig, type WorkerConfig } from './config.js';
import { createStt, createVad, loadVoiceModels, turnHandling } from './voice.js';

interface ProcessData {
  memory?: MemoryStore;
  memoryError?: Error;
}

const UNAVAILABLE_NOTICE =
  "Hi! Just so you know, my memory is unavailable right now, so I can't remember anything from before and won't remember this conversation.";

/** The greeting while memory is late: generic, since it may still arrive (so no "unavailable"). */
const GENERIC_GREETING =
  'Greet the user warmly in one short sentence and ask how you can help. Do not say whether you have talked before.';

function greetingInstructions(memory: UserMemoryReady): string {
  return memory.firstSession
    ? 'This is your first conversation with this user: greet them as someone new, introduce yourself in one sentence and ask how you can help.'
    : `This user is returning (conversation number ${memory.user.sessionCount}): welcome them back as someone you know. ` +
        'If you remember something relevant about them, you may mention it briefly.';
}

/** The system note added at the current point of the conversation when late memory lands. */
function lateMemoryNote(memory: UserMemoryReady | UserMemoryFailed): string {
  if (!memory.available) {
    return (
      'Update: long-term memory could not be loaded for this conversation. You cannot remember or recall anything ' +
      'about the user and will not remember this conversation; if it matters for what they ask, say so briefly.'
    );
  }
  const who = memory.firstSession
    ? 'This is your first conversation with this user.'
    : `This user is returning (conversation number ${memory.user.sessionCount}).`;
  return (
    `Update: your long-term memory of this user has just loaded, later than the start of the conversation. ${who} ` +
    'What you remember is in the <user_memory> block of your instructions, and the memory tools (remember, recall, ' +
    'forget, list_memories) are available from now on. Do not greet the user again.'
  );
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
    // The pseudonymous UUIDv5. A late session knows it without the database; a failed one sends none.
    userId: memory.available ? memory.user.id : memory.reason === 'budget' ? memory.userId : undefined,
  };
}

/** The agent's instructions for this state of memory: base, the user's addendum, memory guidance and block. */
function instructionsFor(config: WorkerConfig, memory: UserMemorySession): string {
  const addendum = choicesFor(config, memory).instructionsAddendum;
  const extra = addendum ? `\n\nAdditional instructions for this user:\n${addendum}` : '';
  return `${config.instructions}${extra}\n\n${memoryInstructions(memory)}`;
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
  const llm = new openai.LLM({
    apiKey: config.llm.apiKey,
    baseURL: config.llm.baseURL,
    model: choices.model,
    user: choices.userId,
  });
  if (!config.speech) {
    // Text only: no VAD and no turn detector, which would otherwise load local models or call
    // LiveKit Cloud; chat arrives on lk.chat and replies leave on lk.transcription.
    return new voice.AgentSession({ llm, vad: null, turnHandling: { turnDetection: null } });
  }
  const common = { apiKey: config.llm.apiKey, baseURL: config.llm.baseURL };
  const vad = createVad(config.speech);
  return new voice.AgentSession({
    llm,
    vad,
    stt: createStt(config.speech, common, vad),
    tts: new openai.TTS({
      ...common,
      model: config.speech.ttsModel,
      ...(choices.voice ? { voice: choices.voice as never } : {}),
    }),
    turnHandling: turnHandling(config.speech),
  });
}

type Logger = ReturnType<typeof log>;

/** Ids and counts only: memory values never go to logs. */
function logReady(logger: Logger, memory: UserMemoryReady, message: string, extra: Record<string, unknown> = {}): void {
  logger.info(
    {
      userId: memory.user.id,
      firstSession: memory.firstSession,
      memories: memory.memories.length,
      settings: memory.settings ? { tenant: memory.settings.tenant, version: memory.settings.version } : null,
      ...extra,
    },
    message,
  );
}

/**
 * Memory that missed the session-start budget has landed: give the running agent the tools, put
 * the block into its instructions (updateInstructions rewrites the instructions message of its
 * chat context, so the next model request carries it), and add a system note at the current point
 * of the conversation so the model knows memory arrived mid-conversation. A failure instead
 * switches the instructions to "memory is unavailable" with a note, and nothing is said aloud: the
 * user was already greeted, and the model mentions it when it matters.
 */
async function applyLateMemory(
  agent: voice.Agent,
  config: WorkerConfig,
  memory: UserMemoryReady | UserMemoryFailed,
): Promise<void> {
  if (memory.available) await agent.updateTools(memory.tools);
  await agent.updateInstructions(instructionsFor(config, memory));
  // Copy and replace in one synchronous step, so nothing the running turn adds is lost in between.
  const chatCtx = agent.chatCtx.copy();
  chatCtx.addMessage({ role: 'system', content: lateMemoryNote(memory) });
  await agent.updateChatCtx(chatCtx);
}

/** Build and start the session for this job's participant; `onClose` runs when it closes. */
async function startSession(
  ctx: JobContext<ProcessData>,
  config: WorkerConfig,
  participantIdentity: string,
  agent: voice.Agent,
  choices: SessionChoices,
  onClose: () => void,
): Promise<voice.AgentSession> {
  const session = buildSession(config, choices);
  session.on(voice.AgentSessionEventTypes.Close, () => {
    onClose();
    ctx.shutdown('session closed');
  });
  await session.start({
    agent,
    room: ctx.room,
    // Only the participant this job is for may talk to it; their memory is the one loaded.
    inputOptions: { participantIdentity, audioEnabled: Boolean(config.speech), textEnabled: true },
    outputOptions: { audioEnabled: Boolean(config.speech), transcriptionEnabled: true },
  });
  return session;
}

export async function runMemoryAgent(ctx: JobContext<ProcessData>): Promise<void> {
  const logger = log().child({ job: ctx.job.id, room: ctx.room.name });
  const config = loadWorkerConfig();
  await ctx.connect(undefined, config.speech ? AutoSubscribe.AUDIO_ONLY : AutoSubscribe.SUBSCRIBE_NONE);
  const participant = await ctx.waitForParticipant();
  if (!config.memory.enabled) {
    // MEMORY=off: the same agent, session and greeting without memory, for comparing latency.
    const agent = new voice.Agent({ instructions: config.instructions });
    const choices = {
      model: config.llm.model,
      voice: config.speech?.voice,
      instructionsAddendum: undefined,
      userId: undefined,
    };
    const session = await startSession(ctx, config, participant.identity, agent, choices, () => {});
    session.generateReply({ instructions: GENERIC_GREETING });
    return;
  }

  const store = await processMemory(ctx.proc);
  const startedAt = performance.now();
  const memory: UserMemorySession = store
    ? await startUserMemory({
        memory: store,
        participant,
        identitySource: config.memory.identitySource,
        memoryLimit: config.memory.blockMaxEntries,
        block: { maxEntries: config.memory.blockMaxEntries, maxChars: config.memory.blockMaxChars },
        tools: {
          categories: config.memory.categories,
          timeoutMs: config.memory.toolTimeoutMs,
          // How long each turn waited for memory: the figure the voice benchmark reads.
          onCall: ({ tool, ms, outcome }) =>
            logger.info({ tool, ms: Math.round(ms * 100) / 100, outcome }, 'memory tool answered'),
        },
        tenant: tenantFromMetadata(ctx.job.metadata),
        budgetMs: config.memory.budgetMs,
      })
    : {
        available: false,
        reason: 'error',
        identity: undefined,
        error: ctx.proc.userData.memoryError ?? new Error('memory not opened'),
        memoryBlock: '',
        tools: {},
      };

  if (memory.available) {
    logReady(logger, memory, 'memory ready for participant');
  } else if (memory.reason === 'budget') {
    logger.warn(
      { userId: memory.userId, budgetMs: memory.budgetMs, code: memory.error.code },
      'memory is late (the database did not answer within the session-start budget): starting without it; it is added when it arrives',
    );
  } else {
    logger.error(
      { participant: participant.identity, error: memory.error.message },
      'memory unavailable: continuing without it',
    );
  }

  const agent = new voice.Agent({
    instructions: instructionsFor(config, memory),
    tools: memory.available ? memory.tools : undefined,
  });
  let closed = false;
  const session = await startSession(ctx, config, participant.identity, agent, choicesFor(config, memory), () => {
    closed = true;
  });

  if (memory.available) session.generateReply({ instructions: greetingInstructions(memory) });
  else if (memory.reason === 'budget') {
    session.generateReply({ instructions: GENERIC_GREETING });
    void whenLate(memory);
  } else session.say(UNAVAILABLE_NOTICE);

  async function whenLate(pending: UserMemoryLate): Promise<void> {
    const result = await pending.late;
    const afterMs = Math.round(performance.now() - startedAt);
    if (closed) {
      logger.info(
        { userId: pending.userId, afterMs, available: result.available },
        'late memory arrived after the session closed',
      );
      return;
    }
    if (result.available)
      logReady(logger, result, 'late memory arrived: adding it to the running session', { afterMs });
    else
      logger.error(
        { userId: pending.userId, afterMs, error: result.error.message },
        'late memory failed: continuing without it',
      );
    try {
      await applyLateMemory(agent, config, result);
    } catch (error) {
      logger.error(
        { userId: pending.userId, error: (error as Error).message },
        'could not add late memory to the session',
      );
    }
  }
}

/**
 * One store per job process, shared by its jobs: a small PostgreSQL pool, or a client of the
 * embedded database that the worker's main process owns and serves. Migrations are the main
 * process's job. A failed open is retried by the next job instead of being remembered forever.
 */
async function processMemory(proc: JobProcess<ProcessData>): Promise<MemoryStore | undefined> {
  if (proc.userData.memory) return proc.userData.memory;
  try {
    proc.userData.memory = await openMemory({
      embeddedRole: 'client',
      migrate: false,
      maxConnections: 2,
      embeddedWaitMs: 3000,
    });
    proc.userData.memoryError = undefined;
  } catch (error) {
    proc.userData.memoryError = error as Error;
  }
  return proc.userData.memory;
}

export default defineAgent<ProcessData>({
  prewarm: async (proc: JobProcess<ProcessData>) => {
    // The VAD loads here, once per process, not on a caller's first words; a missing model fails
    // the process instead of a silent session.
    const config = loadWorkerConfig();
    if (config.speech) loadVoiceModels();
    if (config.memory.enabled) await processMemory(proc);
  },
  entry: runMemoryAgent,
});
