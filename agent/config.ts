import os from 'node:os';
import { z } from 'zod';
import { MemoryError, PII_POLICIES, piiSettingsFromEnv, type PiiSettings } from '../memory/index.js';
import {
  DEFAULT_CATEGORIES,
  DEFAULT_EXTRACT_TIMEOUT_MS,
  DEFAULT_MEMORY_BUDGET_MS,
  DEFAULT_RECALL_BUDGET_MS,
  DEFAULT_TOOL_TIMEOUT_MS,
  type IdentitySource,
} from '../plugins/index.js';

const optional = <T extends z.ZodType>(schema: T) => z.preprocess((v) => (v === '' ? undefined : v), schema.optional());

const AgentEnvSchema = z.object({
  LIVEKIT_URL: optional(z.string().regex(/^(wss?|https?):\/\//, 'must be a ws://, wss://, http:// or https:// URL')),
  LIVEKIT_API_KEY: optional(z.string()),
  LIVEKIT_API_SECRET: optional(z.string()),
  LIVEKIT_AGENT_NAME: optional(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1 to 64 letters, digits, _ . or -')),
  OPENAI_API_KEY: optional(z.string()),
  OPENAI_BASE_URL: optional(z.url({ message: 'must be a URL such as http://127.0.0.1:11434/v1' })),
  LLM_MODEL: optional(z.string()),
  STT_MODEL: optional(z.string()),
  TTS_MODEL: optional(z.string()),
  TTS_VOICE: optional(z.string()),
  AGENT_MODE: optional(z.enum(['auto', 'text', 'voice'])),
  AGENT_INSTRUCTIONS: optional(z.string()),
  AGENT_MAX_JOBS: optional(z.coerce.number().int().min(1).max(10_000)),
  AGENT_IDLE_PROCESSES: optional(z.coerce.number().int().min(0).max(64)),
  MEMORY: optional(z.enum(['on', 'off'])),
  MEMORY_IDENTITY_SOURCE: optional(z.enum(['identity', 'sip-caller'])),
  MEMORY_CATEGORIES: optional(
    z
      .string()
      .transform((s) =>
        s
          .split(',')
          .map((c) => c.trim())
          .filter(Boolean),
      )
      .pipe(
        z
          .array(z.string().regex(/^[A-Z][A-Z0-9_]{0,63}$/, 'must be upper-case identifiers, e.g. FACT,PREFERENCE'))
          .min(1),
      ),
  ),
  MEMORY_BLOCK_MAX_ENTRIES: optional(z.coerce.number().int().min(0).max(1000)),
  MEMORY_BLOCK_MAX_CHARS: optional(z.coerce.number().int().min(200).max(100_000)),
  MEMORY_BUDGET_MS: optional(z.coerce.number().int().min(1).max(60_000)),
  MEMORY_TOOL_TIMEOUT_MS: optional(z.coerce.number().int().min(1).max(600_000)),
  MEMORY_RECALL_BUDGET_MS: optional(z.coerce.number().int().min(1).max(60_000)),
  MEMORY_RECALL: optional(z.enum(['on', 'off'])),
  MEMORY_PII_POLICY: optional(z.enum(PII_POLICIES)),
  MEMORY_PII_NATIONAL_ID_PATTERN: optional(z.string()),
  MEMORY_EXTRACT: optional(z.enum(['on', 'off'])),
  // Below agents-js's shutdownProcessTimeout (60 s), which kills a job process still shutting down.
  MEMORY_EXTRACT_TIMEOUT_MS: optional(z.coerce.number().int().min(1).max(50_000)),
  AGENT_HEALTH_PORT: optional(z.coerce.number().int().min(0).max(65_535)),
  STT_MODE: optional(z.enum(['realtime', 'http'])),
  VAD_ACTIVATION_THRESHOLD: optional(z.coerce.number().min(0.05).max(0.95)),
  VAD_MIN_SILENCE_MS: optional(z.coerce.number().int().min(50).max(5_000)),
  ENDPOINTING_MIN_DELAY_MS: optional(z.coerce.number().int().min(0).max(10_000)),
  ENDPOINTING_MAX_DELAY_MS: optional(z.coerce.number().int().min(100).max(30_000)),
  INTERRUPTIONS: optional(z.enum(['on', 'off'])),
  INTERRUPTION_MIN_MS: optional(z.coerce.number().int().min(0).max(10_000)),
});

/** What a voice session uses: models, the STT path, VAD, endpointing and interruptions. */
export interface VoiceConfig {
  sttModel: string;
  ttsModel: string;
  voice: string | undefined;
  /** `realtime`: OpenAI's transcription websocket; `http`: /v1/audio/transcriptions cut by the VAD. */
  sttMode: 'realtime' | 'http';
  vadActivationThreshold: number;
  /** Silence that ends an utterance, as the VAD hears it. */
  vadMinSilenceMs: number;
  /** The turn is complete this long after the last speech (at least the VAD's silence)... */
  endpointingMinMs: number;
  /** ...and at the latest this long. */
  endpointingMaxMs: number;
  /** Barge-in: the caller speaking over the agent stops the agent's audio. */
  interruptions: boolean;
  /** Speech shorter than this does not interrupt (a cough, "mm-hm"). */
  interruptionMinMs: number;
}

/**
 * Voice defaults. Turn detection by the VAD: 300 ms of silence ends the caller's turn, the
 * shortest wait agents-js allows in VAD mode without cutting people off between words; the
 * end-of-turn model is not used by default (it adds its own wait and a 100 MB model per job).
 */
export const VOICE_DEFAULTS = {
  vadActivationThreshold: 0.5,
  vadMinSilenceMs: 300,
  endpointingMinMs: 300,
  endpointingMaxMs: 2_000,
  interruptionMinMs: 400,
} as const;

export class AgentConfigError extends Error {
  override readonly name = 'AgentConfigError';
  readonly code = 'INVALID_CONFIG';
}

export interface WorkerConfig {
  livekit: {
    url: string;
    apiKey: string;
    apiSecret: string;
    agentName: string;
    maxJobs: number;
    /** Job processes kept started and initialized, waiting for a job (AGENT_IDLE_PROCESSES). */
    idleProcesses: number;
  };
  llm: { apiKey: string; baseURL: string | undefined; model: string };
  /** Set when the session runs with voice; undefined for text-only. */
  speech: VoiceConfig | undefined;
  instructions: string;
  memory: {
    /** False with MEMORY=off: the same agent without memory (no block, no tools), to compare against. */
    enabled: boolean;
    identitySource: IdentitySource;
    categories: string[];
    blockMaxEntries: number;
    blockMaxChars: number;
    /** Session-start latency budget: how long provisioning may take before the session starts without memory. */
    budgetMs: number;
    /** How long a memory tool waits for the database before telling the model memory is slow. */
    toolTimeoutMs: number;
    /** Per-turn recall: how long a turn waits for it (undefined: recall off, MEMORY_RECALL=off). */
    recallBudgetMs: number | undefined;
    /** Sensitive values in remember and extraction: MEMORY_PII_POLICY, MEMORY_PII_NATIONAL_ID_PATTERN. */
    pii: PiiSettings;
    /** After-call extraction (MEMORY_EXTRACT=on): its time limit; undefined when off. */
    extract: { timeoutMs: number } | undefined;
  };
  /** The worker's health endpoint: port on 127.0.0.1 (0: any free port). */
  health: { port: number };
}

export const DEFAULT_LIVEKIT_URL = 'ws://127.0.0.1:7880';
export const DEFAULT_AGENT_NAME = 'memory-agent';

const DEFAULT_INSTRUCTIONS =
  'You are a friendly voice assistant. Keep answers short and conversational. ' +
  'You remember things about each user across conversations.';

/** The worker's settings, from the environment. Every problem names its variable and what to set. */
export function loadWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const parsed = AgentEnvSchema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new AgentConfigError(`${issue.path.join('.')} ${issue.message}`);
  }
  const v = parsed.data;
  if (!v.OPENAI_API_KEY && !v.OPENAI_BASE_URL) {
    throw new AgentConfigError(
      'no language model configured: set OPENAI_API_KEY (OpenAI), or OPENAI_BASE_URL to any OpenAI-compatible server ' +
        '(e.g. Ollama at http://127.0.0.1:11434/v1 with LLM_MODEL=llama3.2); `npm run demo` runs offline with a scripted stand-in',
    );
  }
  // Real OpenAI has speech models; an arbitrary compatible server may not, so voice there needs
  // STT_MODEL and TTS_MODEL named explicitly.
  const onOpenAI = Boolean(v.OPENAI_API_KEY) && !v.OPENAI_BASE_URL;
  const sttModel = v.STT_MODEL ?? (onOpenAI ? 'gpt-4o-mini-transcribe' : undefined);
  const ttsModel = v.TTS_MODEL ?? (onOpenAI ? 'gpt-4o-mini-tts' : undefined);
  const mode = v.AGENT_MODE ?? 'auto';
  if (mode === 'voice' && (!sttModel || !ttsModel)) {
    throw new AgentConfigError(
      'AGENT_MODE=voice needs speech models: set OPENAI_API_KEY for OpenAI, or STT_MODEL and TTS_MODEL',
    );
  }
  const voice = mode === 'voice' || (mode === 'auto' && Boolean(sttModel && ttsModel));
  if (
    v.ENDPOINTING_MIN_DELAY_MS !== undefined &&
    v.ENDPOINTING_MAX_DELAY_MS !== undefined &&
    v.ENDPOINTING_MIN_DELAY_MS > v.ENDPOINTING_MAX_DELAY_MS
  ) {
    throw new AgentConfigError('ENDPOINTING_MIN_DELAY_MS must not exceed ENDPOINTING_MAX_DELAY_MS');
  }
  let pii: PiiSettings;
  try {
    pii = piiSettingsFromEnv(env);
  } catch (error) {
    if (error instanceof MemoryError) throw new AgentConfigError(error.message);
    throw error;
  }
  return {
    livekit: {
      url: v.LIVEKIT_URL ?? DEFAULT_LIVEKIT_URL,
      apiKey: v.LIVEKIT_API_KEY ?? 'devkey',
      apiSecret: v.LIVEKIT_API_SECRET ?? 'secret',
      agentName: v.LIVEKIT_AGENT_NAME ?? DEFAULT_AGENT_NAME,
      maxJobs: v.AGENT_MAX_JOBS ?? 20,
      idleProcesses: v.AGENT_IDLE_PROCESSES ?? defaultIdleProcesses(),
    },
    llm: { apiKey: v.OPENAI_API_KEY ?? 'not-needed', baseURL: v.OPENAI_BASE_URL, model: v.LLM_MODEL ?? 'gpt-4.1-mini' },
    speech: voice
      ? {
          sttModel: sttModel!,
          ttsModel: ttsModel!,
          voice: v.TTS_VOICE,
          // OpenAI itself serves the realtime websocket; other compatible servers mostly do not.
          sttMode: v.STT_MODE ?? (onOpenAI ? 'realtime' : 'http'),
          vadActivationThreshold: v.VAD_ACTIVATION_THRESHOLD ?? VOICE_DEFAULTS.vadActivationThreshold,
          vadMinSilenceMs: v.VAD_MIN_SILENCE_MS ?? VOICE_DEFAULTS.vadMinSilenceMs,
          endpointingMinMs: v.ENDPOINTING_MIN_DELAY_MS ?? VOICE_DEFAULTS.endpointingMinMs,
          endpointingMaxMs: v.ENDPOINTING_MAX_DELAY_MS ?? VOICE_DEFAULTS.endpointingMaxMs,
          interruptions: (v.INTERRUPTIONS ?? 'on') === 'on',
          interruptionMinMs: v.INTERRUPTION_MIN_MS ?? VOICE_DEFAULTS.interruptionMinMs,
        }
      : undefined,
    instructions: v.AGENT_INSTRUCTIONS ?? DEFAULT_INSTRUCTIONS,
    memory: {
      enabled: (v.MEMORY ?? 'on') === 'on',
      identitySource: v.MEMORY_IDENTITY_SOURCE ?? 'identity',
      categories: v.MEMORY_CATEGORIES ?? [...DEFAULT_CATEGORIES],
      blockMaxEntries: v.MEMORY_BLOCK_MAX_ENTRIES ?? 20,
      blockMaxChars: v.MEMORY_BLOCK_MAX_CHARS ?? 4000,
      budgetMs: v.MEMORY_BUDGET_MS ?? DEFAULT_MEMORY_BUDGET_MS,
      toolTimeoutMs: v.MEMORY_TOOL_TIMEOUT_MS ?? DEFAULT_TOOL_TIMEOUT_MS,
      recallBudgetMs: v.MEMORY_RECALL === 'off' ? undefined : (v.MEMORY_RECALL_BUDGET_MS ?? DEFAULT_RECALL_BUDGET_MS),
      pii,
      extract:
        v.MEMORY_EXTRACT === 'on'
          ? { timeoutMs: v.MEMORY_EXTRACT_TIMEOUT_MS ?? DEFAULT_EXTRACT_TIMEOUT_MS }
          : undefined,
    },
    health: { port: v.AGENT_HEALTH_PORT ?? 0 },
  };
}

/**
 * Agents JS keeps no job process warm unless it runs in production mode (`numIdleProcesses` is 0
 * otherwise): each job then starts a process and imports @livekit/agents first, 2 to 7 s on a
 * 2-core machine before the greeting can start. Agents' production default, one per core up to 4.
 */
export function defaultIdleProcesses(): number {
  return Math.min(os.availableParallelism(), 4);
}
