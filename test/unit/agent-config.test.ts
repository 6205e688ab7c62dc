import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { type AgentConfigError, loadWorkerConfig } from '../../agent/config.js';

function errorOf(env: NodeJS.ProcessEnv): AgentConfigError {
  try {
    loadWorkerConfig(env);
  } catch (error) {
    return error as AgentConfigError;
  }
  throw new Error('expected an AgentConfigError');
}

describe('loadWorkerConfig', () => {
  it('runs text-only against any OpenAI-compatible server, with local LiveKit defaults', () => {
    const config = loadWorkerConfig({ OPENAI_BASE_URL: 'http://127.0.0.1:11434/v1', LLM_MODEL: 'llama3.2' });
    expect(config.speech).toBeUndefined();
    expect(config.llm).toEqual({ apiKey: 'not-needed', baseURL: 'http://127.0.0.1:11434/v1', model: 'llama3.2' });
    expect(config.livekit).toEqual({
      url: 'ws://127.0.0.1:7880',
      apiKey: 'devkey',
      apiSecret: 'secret',
      agentName: 'memory-agent',
      maxJobs: 20,
      idleProcesses: Math.min(os.availableParallelism(), 4),
    });
    expect(config.memory.categories).toEqual(['FACT', 'PREFERENCE', 'PERSONAL', 'TASK']);
    expect(config.memory.enabled).toBe(true);
  });

  it('MEMORY=off runs the same agent without memory (the benchmark compares the two); anything else is refused', () => {
    const env = { OPENAI_BASE_URL: 'http://127.0.0.1:11434/v1' };
    expect(loadWorkerConfig({ ...env, MEMORY: 'off' }).memory.enabled).toBe(false);
    expect(loadWorkerConfig({ ...env, MEMORY: 'on' }).memory.enabled).toBe(true);
    expect(() => loadWorkerConfig({ ...env, MEMORY: 'no' })).toThrow(/MEMORY/);
  });

  it('turns voice on with OpenAI speech models when OPENAI_API_KEY is set, unless told text-only', () => {
    expect(loadWorkerConfig({ OPENAI_API_KEY: 'sk-test' }).speech).toEqual({
      sttModel: 'gpt-4o-mini-transcribe',
      ttsModel: 'gpt-4o-mini-tts',
      voice: undefined,
      sttMode: 'realtime',
      vadActivationThreshold: 0.5,
      vadMinSilenceMs: 300,
      endpointingMinMs: 300,
      endpointingMaxMs: 2000,
      interruptions: true,
      interruptionMinMs: 400,
    });
    expect(loadWorkerConfig({ OPENAI_API_KEY: 'sk-test', AGENT_MODE: 'text' }).speech).toBeUndefined();
    expect(
      loadWorkerConfig({ OPENAI_BASE_URL: 'http://x/v1', STT_MODEL: 'whisper', TTS_MODEL: 'kokoro' }).speech?.sttModel,
    ).toBe('whisper');
  });

  it('keeps job processes warm by default (Agents JS keeps none outside production mode); AGENT_IDLE_PROCESSES sets how many', () => {
    const env = { OPENAI_BASE_URL: 'http://127.0.0.1:11434/v1' };
    expect(loadWorkerConfig(env).livekit.idleProcesses).toBeGreaterThan(0);
    expect(loadWorkerConfig({ ...env, AGENT_IDLE_PROCESSES: '0' }).livekit.idleProcesses).toBe(0);
    expect(loadWorkerConfig({ ...env, AGENT_IDLE_PROCESSES: '6' }).livekit.idleProcesses).toBe(6);
    expect(errorOf({ ...env, AGENT_IDLE_PROCESSES: '-1' }).message).toContain('AGENT_IDLE_PROCESSES');
    expect(errorOf({ ...env, AGENT_IDLE_PROCESSES: 'many' }).message).toContain('AGENT_IDLE_PROCESSES');
  });

  it('names the variable and what to do when something is wrong', () => {
    expect(errorOf({}).message).toMatch(/OPENAI_API_KEY.*OPENAI_BASE_URL/);
    expect(errorOf({ OPENAI_BASE_URL: 'http://x/v1', AGENT_MODE: 'voice' }).message).toMatch(/STT_MODEL and TTS_MODEL/);
    expect(errorOf({ OPENAI_API_KEY: 'k', LIVEKIT_URL: 'localhost:7880' }).message).toContain('LIVEKIT_URL');
    expect(errorOf({ OPENAI_API_KEY: 'k', MEMORY_CATEGORIES: 'FACT,lower' }).message).toContain('MEMORY_CATEGORIES');
    expect(errorOf({ OPENAI_API_KEY: 'k', LIVEKIT_AGENT_NAME: 'has space' }).message).toContain('LIVEKIT_AGENT_NAME');
    expect(errorOf({}).code).toBe('INVALID_CONFIG');
  });
});
