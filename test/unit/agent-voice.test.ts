import { describe, expect, it } from 'vitest';
import { inference } from '@livekit/agents';
import { AgentConfigError, loadWorkerConfig } from '../../agent/config.js';
import { LOCAL_INFERENCE_PACKAGE, createVad, loadVoiceModels, turnHandling } from '../../agent/voice.js';

const speechEnv = { OPENAI_BASE_URL: 'http://127.0.0.1:9/v1', STT_MODEL: 'whisper-1', TTS_MODEL: 'tts-1' };

describe('voice configuration', () => {
  it('uses HTTP transcription (cut by the VAD) on OpenAI-compatible servers and the realtime websocket on OpenAI', () => {
    expect(loadWorkerConfig(speechEnv).speech?.sttMode).toBe('http');
    expect(loadWorkerConfig({ OPENAI_API_KEY: 'sk-test' }).speech?.sttMode).toBe('realtime');
    expect(loadWorkerConfig({ ...speechEnv, STT_MODE: 'realtime' }).speech?.sttMode).toBe('realtime');
  });

  it('takes endpointing, VAD and interruption settings and names a bad one', () => {
    const speech = loadWorkerConfig({
      ...speechEnv,
      VAD_MIN_SILENCE_MS: '250',
      ENDPOINTING_MIN_DELAY_MS: '200',
      ENDPOINTING_MAX_DELAY_MS: '1500',
      INTERRUPTIONS: 'off',
    }).speech!;
    expect(turnHandling(speech)).toEqual({
      turnDetection: 'vad',
      endpointing: { minDelay: 200, maxDelay: 1500 },
      interruption: { enabled: false, minDuration: 400 },
    });
    expect(speech.vadMinSilenceMs).toBe(250);
    expect(() => loadWorkerConfig({ ...speechEnv, STT_MODE: 'grpc' })).toThrow(/STT_MODE/);
    expect(() =>
      loadWorkerConfig({ ...speechEnv, ENDPOINTING_MIN_DELAY_MS: '3000', ENDPOINTING_MAX_DELAY_MS: '1000' }),
    ).toThrow(/ENDPOINTING_MIN_DELAY_MS must not exceed ENDPOINTING_MAX_DELAY_MS/);
  });

  it('loads the VAD model from the package (the real one, shipped in @livekit/local-inference) and builds a VAD', () => {
    expect(() => loadVoiceModels()).not.toThrow();
    const vad = createVad(loadWorkerConfig(speechEnv).speech!);
    expect(vad).toBeInstanceOf(inference.VAD);
    expect(vad.minSilenceDuration).toBe(300);
  });

  it('refuses to start voice mode when the VAD package is missing, naming the package and what to do', () => {
    const missing = (name: string) => {
      throw Object.assign(new Error(`Cannot find module '${name}'`), { code: 'MODULE_NOT_FOUND' });
    };
    let error: unknown;
    try {
      loadVoiceModels(missing);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(AgentConfigError);
    expect((error as Error).message).toContain(`npm install ${LOCAL_INFERENCE_PACKAGE}`);
    expect((error as Error).message).toContain('AGENT_MODE=text');
  });
});
