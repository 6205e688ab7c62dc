import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { TokenVerifier } from 'livekit-server-sdk';
import { afterAll, describe, expect, it } from 'vitest';
import { freeLivekitPorts } from '../../scripts/livekit/ports.js';
import { isLivekitServerUp } from '../../scripts/livekit/server.js';
import { tempDataDir } from '../support/backends.js';
import { ScriptedOpenAI } from '../support/openai-standin.js';
import { ROOT, cleanEnv, runTs } from '../support/processes.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe('npm run token', () => {
  it('prints a token for the identity that dispatches the agent into a fresh room', async () => {
    const result = await runTs(
      'scripts/token.ts',
      ['--identity', 'alice@example.com', '--json'],
      cleanEnv({ LIVEKIT_AGENT_NAME: 'my-agent' }),
    );
    expect(result.code).toBe(0);
    const out = JSON.parse(result.stdout) as { url: string; room: string; token: string; agentName: string };
    expect(out.url).toBe('ws://127.0.0.1:7880');
    const claims = await new TokenVerifier('devkey', 'secret').verify(out.token);
    expect(claims.sub).toBe('alice@example.com');
    expect(claims.video).toMatchObject({ roomJoin: true, room: out.room });
    expect(claims.video?.canUpdateOwnMetadata).toBeFalsy();
    expect(JSON.stringify(claims.roomConfig)).toContain('my-agent');

    const again = JSON.parse((await runTs('scripts/token.ts', ['--identity', 'bob', '--json'], cleanEnv())).stdout) as {
      room: string;
    };
    expect(again.room).not.toBe(out.room);
  });

  it('explains itself and refuses to run without an identity', async () => {
    expect((await runTs('scripts/token.ts', ['--help'], cleanEnv())).stdout).toContain('--identity');
    const missing = await runTs('scripts/token.ts', [], cleanEnv());
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--identity is required');
  });
});

describe('npm run load and npm run capacity', () => {
  it('explain themselves and refuse bad options with exit code 2, naming the option', async () => {
    const help = await runTs('scripts/capacity.ts', ['--help'], cleanEnv());
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--p95-limit-ms');
    const falling = await runTs('scripts/capacity.ts', ['--levels', '4,2'], cleanEnv());
    expect(falling.code).toBe(2);
    expect(falling.stderr).toContain('--levels must rise');
    const memory = await runTs('scripts/capacity.ts', ['--memory', 'maybe'], cleanEnv());
    expect(memory.code).toBe(2);
    expect(memory.stderr).toContain('--memory must be on or off');
    const loadHelp = await runTs('scripts/load.ts', ['--help'], cleanEnv());
    expect(loadHelp.stdout).toContain('--hold-sec');
    const hold = await runTs('scripts/load.ts', ['--hold-sec=-1'], cleanEnv());
    expect(hold.code).toBe(2);
    expect(hold.stderr).toContain('--hold-sec must be an integer');
  });
});

describe('npm start', () => {
  it('starts a local livekit-server when none answers at LIVEKIT_URL, registers the worker, and stops both on SIGTERM', async () => {
    const model = new ScriptedOpenAI();
    await model.start();
    const { port } = await freeLivekitPorts();
    const dataDir = tempDataDir('start');
    dirs.push(dataDir);
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'scripts/start.ts')], {
      cwd: ROOT,
      env: cleanEnv({
        LIVEKIT_URL: `ws://127.0.0.1:${port}`,
        OPENAI_BASE_URL: model.baseURL,
        LLM_MODEL: 'scripted',
        MEMORY_DATA_DIR: dataDir,
      }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: string[] = [];
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    try {
      await new Promise<void>((resolve, reject) => {
        readline.createInterface({ input: child.stdout }).on('line', (line) => {
          lines.push(line);
          if (line.includes('start: ready')) resolve();
        });
        child.once('exit', (code) => reject(new Error(`npm start exited (${code}): ${lines.join('\n')}\n${stderr}`)));
      });
      expect(lines.join('\n')).toContain('starting a local one');
      expect(await isLivekitServerUp(`http://127.0.0.1:${port}`)).toBe(true);
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
      await model.stop();
    }
    expect(child.exitCode).toBe(0);
    expect(await isLivekitServerUp(`http://127.0.0.1:${port}`)).toBe(false);
  });

  it('fails with a message naming what to set when no model is configured', async () => {
    const result = await runTs('scripts/start.ts', [], cleanEnv({ OPENAI_API_KEY: '', OPENAI_BASE_URL: '' }));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/OPENAI_API_KEY.*OPENAI_BASE_URL/);
  });
});
