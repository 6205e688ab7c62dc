/**
 * The job entry: LiveKit Agents forks a process per job and imports this file; its default export
 * runs one session for the participant who joined. Memory is wired in with the package's public
 * API only (userMemory, prewarmMemory from plugins/), exactly as the README shows for your own agent.
 */
import { AutoSubscribe, defineAgent, log, voice, type JobContext, type JobProcess } from '@livekit/agents';
import * as openai from '@livekit/agents-plugin-openai';
import { GENERIC_GREETING_INSTRUCTIONS, prewarmMemory, userMemory, type AgentMemory } from '../plugins/index.js';
import { loadWorkerConfig, type WorkerConfig } from './config.js';
import { createStt, createVad, loadVoiceModels, turnHandling } from './voice.js';

function buildSession(config: WorkerConfig, memory: AgentMemory | undefined): voice.AgentSession {
  const settings = memory?.settings?.config;
  // `user` is OpenAI's end-user identifier for abuse monitoring: the pseudonymous UUIDv5, never
  // the identity itself.
  const llm = new openai.LLM({
    apiKey: config.llm.apiKey,
    baseURL: config.llm.baseURL,
    model: settings?.model ?? config.llm.model,
    user: memory?.userId,
  });
  if (!config.speech) {
    // Text only: no VAD and no turn detector, which would otherwise load local models or call
    // LiveKit Cloud; chat arrives on lk.chat and replies leave on lk.transcription.
    return new voice.AgentSession({ llm, vad: null, turnHandling: { turnDetection: null } });
  }
  const common = { apiKey: config.llm.apiKey, baseURL: config.llm.baseURL };
  const vad = createVad(config.speech);
  const voiceName = settings?.voice ?? config.speech.voice;
  return new voice.AgentSession({
    llm,
    vad,
    stt: createStt(config.speech, common, vad),
    tts: new openai.TTS({
      ...common,
      model: config.speech.ttsModel,
      ...(voiceName ? { voice: voiceName as never } : {}),
    }),
    turnHandling: turnHandling(config.speech),
  });
}

export async function runMemoryAgent(ctx: JobContext): Promise<void> {
  const config = loadWorkerConfig();
  await ctx.connect(undefined, config.speech ? AutoSubscribe.AUDIO_ONLY : AutoSubscribe.SUBSCRIBE_NONE);
  const participant = await ctx.waitForParticipant();

  if (!config.memory.enabled) {
    // MEMORY=off: the same agent, session and greeting without memory, for comparing latency.
    const session = await startSession(
      ctx,
      config,
      participant.identity,
      new voice.Agent({ instructions: config.instructions }),
    );
    session.generateReply({ instructions: GENERIC_GREETING_INSTRUCTIONS });
    return;
  }
  const logger = log().child({ job: ctx.job.id, room: ctx.room.name });
  const memory = await userMemory(ctx, {
    participant,
    identitySource: config.memory.identitySource,
    block: { maxEntries: config.memory.blockMaxEntries, maxChars: config.memory.blockMaxChars },
    tools: {
      categories: config.memory.categories,
      timeoutMs: config.memory.toolTimeoutMs,
      // How long each turn waited for memory: the figure the voice benchmark reads.
      onCall: ({ tool, ms, outcome }) =>
        logger.info({ tool, ms: Math.round(ms * 100) / 100, outcome }, 'memory tool answered'),
    },
    budgetMs: config.memory.budgetMs,
    recall: config.memory.recallBudgetMs === undefined ? false : { budgetMs: config.memory.recallBudgetMs },
    pii: config.memory.pii,
    // After the call, from the session's own LLM; JSON mode, which OpenAI-compatible servers take.
    extract: config.memory.extract
      ? {
          enabled: true,
          timeoutMs: config.memory.extract.timeoutMs,
          extraKwargs: { response_format: { type: 'json_object' } },
        }
      : false,
  });
  const agent = new voice.Agent(memory.agentOptions(config.instructions));
  memory.greet(await startSession(ctx, config, participant.identity, agent, memory));
}

/** Build and start the session for this job's participant, with or without memory. */
async function startSession(
  ctx: JobContext,
  config: WorkerConfig,
  participantIdentity: string,
  agent: voice.Agent,
  memory?: AgentMemory,
): Promise<voice.AgentSession> {
  const session = buildSession(config, memory);
  session.on(voice.AgentSessionEventTypes.Close, () => ctx.shutdown('session closed'));
  await session.start({
    agent,
    room: ctx.room,
    // Only the participant this job is for may talk to it; their memory is the one loaded.
    inputOptions: { participantIdentity, audioEnabled: Boolean(config.speech), textEnabled: true },
    outputOptions: { audioEnabled: Boolean(config.speech), transcriptionEnabled: true },
  });
  return session;
}

export default defineAgent({
  prewarm: async (proc: JobProcess) => {
    // The VAD loads here, once per process, not on a caller's first words; a missing model fails
    // the process instead of a silent session.
    const config = loadWorkerConfig();
    if (config.speech) loadVoiceModels();
    if (config.memory.enabled) await prewarmMemory(proc);
  },
  entry: runMemoryAgent,
});
