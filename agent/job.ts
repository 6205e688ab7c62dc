/**
 * The job entry: LiveKit Agents forks a process per job and imports this file; its default export
 * runs one session for the participant who joined. Memory is wired in with the package's public
 * API only (userMemory, prewarmMemory from plugins/), exactly as the README shows for your own agent.
 */
import { AutoSubscribe, defineAgent, voice, type JobContext, type JobProcess } from '@livekit/agents';
import * as openai from '@livekit/agents-plugin-openai';
import { prewarmMemory, userMemory, type AgentMemory } from '../plugins/index.js';
import { loadWorkerConfig, type WorkerConfig } from './config.js';
import { createStt, createVad, loadVoiceModels, turnHandling } from './voice.js';

function buildSession(config: WorkerConfig, memory: AgentMemory): voice.AgentSession {
  const settings = memory.settings?.config;
  // `user` is OpenAI's end-user identifier for abuse monitoring: the pseudonymous UUIDv5, never
  // the identity itself.
  const llm = new openai.LLM({
    apiKey: config.llm.apiKey,
    baseURL: config.llm.baseURL,
    model: settings?.model ?? config.llm.model,
    user: memory.userId,
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

  const memory = await userMemory(ctx, {
    participant,
    identitySource: config.memory.identitySource,
    block: { maxEntries: config.memory.blockMaxEntries, maxChars: config.memory.blockMaxChars },
    tools: { categories: config.memory.categories, timeoutMs: config.memory.toolTimeoutMs },
    budgetMs: config.memory.budgetMs,
  });
  const agent = new voice.Agent(memory.agentOptions(config.instructions));
  const session = buildSession(config, memory);
  session.on(voice.AgentSessionEventTypes.Close, () => ctx.shutdown('session closed'));
  await session.start({
    agent,
    room: ctx.room,
    // Only the participant this job is for may talk to it; their memory is the one loaded.
    inputOptions: {
      participantIdentity: participant.identity,
      audioEnabled: Boolean(config.speech),
      textEnabled: true,
    },
    outputOptions: { audioEnabled: Boolean(config.speech), transcriptionEnabled: true },
  });
  memory.greet(session);
}

export default defineAgent({
  prewarm: async (proc: JobProcess) => {
    // The VAD loads here, once per process, not on a caller's first words; a missing model fails
    // the process instead of a silent session.
    if (loadWorkerConfig().speech) loadVoiceModels();
    await prewarmMemory(proc);
  },
  entry: runMemoryAgent,
});
