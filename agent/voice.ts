/**
 * Voice for the worker: an explicit VAD and turn handling from packages, both OpenAI speech paths
 * (realtime transcription over a websocket, and plain HTTP transcription cut into utterances by
 * the VAD), and settings with defaults chosen for a phone-like conversation.
 */
import { createRequire } from 'node:module';
import { inference, stt as sttBase, type VAD } from '@livekit/agents';
import * as openai from '@livekit/agents-plugin-openai';
import { AgentConfigError, type VoiceConfig } from './config.js';

/** The package that carries the VAD and end-of-turn models (inside its npm package, offline). */
export const LOCAL_INFERENCE_PACKAGE = '@livekit/local-inference';

interface LocalInference {
  initVad(): void;
  initEot(): void;
}

/**
 * Load the local VAD (Silero, shipped inside @livekit/local-inference) now, in the process's
 * prewarm, and fail loudly when it cannot load: agents-js alone only logs that "local VAD/EOT paths
 * are disabled" and the session would then never hear a turn end.
 */
export function loadVoiceModels(resolve: (name: string) => unknown = createRequire(import.meta.url)): void {
  let native: LocalInference;
  try {
    native = resolve(LOCAL_INFERENCE_PACKAGE) as LocalInference;
  } catch (error) {
    throw new AgentConfigError(
      `voice mode needs ${LOCAL_INFERENCE_PACKAGE} (the VAD model) and its binary for this platform ` +
        `(${LOCAL_INFERENCE_PACKAGE}-${process.platform}-${process.arch}...): run \`npm install ${LOCAL_INFERENCE_PACKAGE}\` ` +
        `on this machine, or set AGENT_MODE=text (${(error as Error).message.split('\n')[0]})`,
    );
  }
  if (typeof native.initVad !== 'function') {
    throw new AgentConfigError(
      `${LOCAL_INFERENCE_PACKAGE} has no initVad(): install a version that agents-js supports`,
    );
  }
  native.initVad();
}

export function createVad(config: VoiceConfig): VAD {
  return new inference.VAD({
    activationThreshold: config.vadActivationThreshold,
    minSilenceDuration: config.vadMinSilenceMs,
  });
}

/**
 * `realtime`: OpenAI's realtime transcription websocket (`/v1/realtime?intent=transcription`).
 * `http`: `/v1/audio/transcriptions`, which most OpenAI-compatible speech servers serve; the VAD
 * cuts the caller's audio into utterances and each is transcribed once.
 */
export function createStt(
  config: VoiceConfig,
  common: { apiKey: string; baseURL: string | undefined },
  vad: VAD,
): sttBase.STT {
  if (config.sttMode === 'realtime') {
    return new openai.STT({ ...common, model: config.sttModel, useRealtime: true, vad });
  }
  return new sttBase.StreamAdapter(new openai.STT({ ...common, model: config.sttModel, useRealtime: false }), vad);
}

/** Endpointing and interruptions as the session takes them. */
export function turnHandling(config: VoiceConfig) {
  return {
    turnDetection: 'vad' as const,
    endpointing: { minDelay: config.endpointingMinMs, maxDelay: config.endpointingMaxMs },
    interruption: { enabled: config.interruptions, minDuration: config.interruptionMinMs },
  };
}
