import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, cleanEnv } from '../support/processes.js';

/** The worker as `npm start` runs it, with packages hidden as if never installed. */
function startWorker(env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '--require',
        path.join(ROOT, 'test/support/hide-packages.cjs'),
        '--import',
        'tsx',
        path.join(ROOT, 'agent/main.ts'),
      ],
      { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    // Far longer than the refusal takes; a worker that does not refuse would run until killed.
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('voice mode without the VAD package', () => {
  it('the worker refuses to start, naming the package and what to do, before touching LiveKit or the database', async () => {
    const result = await startWorker(
      cleanEnv({
        HIDE_PACKAGES: '@livekit/local-inference',
        AGENT_MODE: 'voice',
        OPENAI_BASE_URL: 'http://127.0.0.1:9/v1',
        STT_MODEL: 'whisper-1',
        TTS_MODEL: 'tts-1',
        // Nothing listens here: a worker that went on would fail differently (or hang).
        LIVEKIT_URL: 'ws://127.0.0.1:9',
        MEMORY_DATA_DIR: path.join(ROOT, '.data-never-created'),
      }),
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('voice mode needs @livekit/local-inference');
    expect(result.stderr).toContain('npm install @livekit/local-inference');
    expect(result.stdout).not.toContain('opening the memory database');
  });
});
