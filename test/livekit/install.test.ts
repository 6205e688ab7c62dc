import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LivekitServerError } from '../../scripts/livekit/errors.js';
import { ensureLivekitServer, livekitServerCacheBinDir } from '../../scripts/livekit/install.js';
import { cleanEnv, runTs } from '../support/processes.js';

/**
 * The lookup and install logic, with fake binaries and a fake `go` in a sandbox (its own HOME,
 * XDG_CACHE_HOME and PATH), so nothing is built and the machine's real server is never found.
 */
let sandbox: string;
let env: NodeJS.ProcessEnv;
let emptyPathDir: string;

beforeEach(async () => {
  sandbox = await mkdtemp(path.join(os.tmpdir(), 'livekit-install-'));
  emptyPathDir = path.join(sandbox, 'path');
  await mkdir(emptyPathDir);
  env = { HOME: path.join(sandbox, 'home'), XDG_CACHE_HOME: path.join(sandbox, 'cache'), PATH: emptyPathDir };
});

afterEach(async () => {
  await rm(sandbox, { recursive: true, force: true });
});

async function script(file: string, body: string): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `#!/bin/sh\n${body}\n`);
  await chmod(file, 0o755);
  return file;
}

const FAKE_SERVER = 'echo "livekit-server version 1.13.5"';

async function failure(promise: Promise<unknown>): Promise<LivekitServerError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(LivekitServerError);
  return error as LivekitServerError;
}

describe('ensureLivekitServer', () => {
  it('rejects a LIVEKIT_SERVER_BIN that is not executable, saying what to do', async () => {
    const file = path.join(sandbox, 'livekit-server');
    await writeFile(file, 'not a program');
    const error = await failure(ensureLivekitServer({ env: { ...env, LIVEKIT_SERVER_BIN: file } }));
    expect(error.code).toBe('BIN_NOT_EXECUTABLE');
    expect(error.message).toContain(file);
    expect(error.message).toContain('chmod +x');
  });

  it('rejects a LIVEKIT_SERVER_BIN that does not exist', async () => {
    const error = await failure(
      ensureLivekitServer({ env: { ...env, LIVEKIT_SERVER_BIN: path.join(sandbox, 'nope') } }),
    );
    expect(error.code).toBe('BIN_NOT_EXECUTABLE');
  });

  it('uses LIVEKIT_SERVER_BIN first, then livekit-server on PATH, then the cache', async () => {
    const explicit = await script(path.join(sandbox, 'explicit', 'livekit-server'), FAKE_SERVER);
    const onPath = await script(path.join(emptyPathDir, 'livekit-server'), FAKE_SERVER);
    const cached = await script(path.join(livekitServerCacheBinDir(env), 'livekit-server'), FAKE_SERVER);
    expect(await ensureLivekitServer({ env: { ...env, LIVEKIT_SERVER_BIN: explicit } })).toBe(explicit);
    expect(await ensureLivekitServer({ env })).toBe(onPath);
    await rm(onPath);
    expect(await ensureLivekitServer({ env })).toBe(cached);
  });

  it('puts the cache under XDG_CACHE_HOME, else HOME/.cache, outside the repository', () => {
    expect(livekitServerCacheBinDir({ XDG_CACHE_HOME: '/x' })).toBe(
      '/x/livekit-user-memory/livekit-server-v1.13.5/bin',
    );
    expect(livekitServerCacheBinDir({ HOME: '/h', XDG_CACHE_HOME: '' })).toBe(
      '/h/.cache/livekit-user-memory/livekit-server-v1.13.5/bin',
    );
  });

  it('without a server and without go: names Homebrew, the install script, Docker and LIVEKIT_SERVER_BIN', async () => {
    const error = await failure(ensureLivekitServer({ env }));
    expect(error.code).toBe('GO_NOT_FOUND');
    expect(error.message).toContain('brew install livekit');
    expect(error.message).toContain('curl -sSL https://get.livekit.io | bash');
    expect(error.message).toContain('docker run --rm --network host livekit/livekit-server --dev --bind 127.0.0.1');
    expect(error.message).toContain('LIVEKIT_SERVER_BIN');
    expect(error.message).toContain('https://go.dev/dl/');
  });

  it('renames a finished build (`server`) to livekit-server without building', async () => {
    const binDir = livekitServerCacheBinDir(env);
    await script(path.join(binDir, 'server'), FAKE_SERVER);
    const binary = await ensureLivekitServer({ env });
    expect(binary).toBe(path.join(binDir, 'livekit-server'));
    expect((await readdir(binDir)).sort()).toEqual(['livekit-server']);
  });

  it('refuses a `server` that is not livekit-server v1.13.5', async () => {
    await script(path.join(livekitServerCacheBinDir(env), 'server'), 'echo "something else 0.1"');
    const error = await failure(ensureLivekitServer({ env }));
    expect(error.code).toBe('INSTALL_FAILED');
    expect(error.message).toContain('does not report version v1.13.5');
  });

  it('builds with go install into the cache, streaming progress, and renames the result', async () => {
    // A fake go: prints like go, then writes the `server` binary into GOBIN as go install would.
    await script(
      path.join(emptyPathDir, 'go'),
      [
        'echo "go: downloading github.com/livekit/livekit-server v1.13.5" >&2',
        'echo "args: $*"',
        `printf '#!/bin/sh\\n${FAKE_SERVER}\\n' > "$GOBIN/server"`,
        '/bin/chmod +x "$GOBIN/server"',
      ].join('\n'),
    );
    const lines: string[] = [];
    const binary = await ensureLivekitServer({ env, onProgress: (line) => lines.push(line) });
    expect(binary).toBe(path.join(livekitServerCacheBinDir(env), 'livekit-server'));
    expect(lines[0]).toBe('Building livekit-server v1.13.5 from source with Go (first run only, a few minutes)...');
    expect(lines).toContain('go: downloading github.com/livekit/livekit-server v1.13.5');
    expect(lines).toContain('args: install github.com/livekit/livekit-server/cmd/server@v1.13.5');
    expect(await readdir(livekitServerCacheBinDir(env))).toEqual(['livekit-server']);
    // The second call finds the cached build.
    expect(await ensureLivekitServer({ env })).toBe(binary);
  });

  it('reports a failed go install with its output and the other ways to install', async () => {
    await script(
      path.join(emptyPathDir, 'go'),
      'echo "go: github.com/livekit/livekit-server@v1.13.5: proxy unreachable" >&2\nexit 1',
    );
    const error = await failure(ensureLivekitServer({ env }));
    expect(error.code).toBe('INSTALL_FAILED');
    expect(error.message).toContain('proxy unreachable');
    expect(error.message).toContain('brew install livekit');
  });
});

describe('npm run livekit:install', () => {
  it('prints the path on success', async () => {
    await script(path.join(emptyPathDir, 'livekit-server'), FAKE_SERVER);
    const result = await runTs('scripts/livekit/install.ts', [], { ...cleanEnv(), ...env, LIVEKIT_SERVER_BIN: '' });
    expect(result.stdout).toBe(`${path.join(emptyPathDir, 'livekit-server')}\n`);
    expect(result.code).toBe(0);
  });

  it('exits non-zero with the install hint when nothing can be had', async () => {
    const result = await runTs('scripts/livekit/install.ts', [], { ...cleanEnv(), ...env, LIVEKIT_SERVER_BIN: '' });
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('brew install livekit');
    expect(result.stderr).toContain('https://get.livekit.io');
  });

  it('explains itself with --help', async () => {
    const result = await runTs('scripts/livekit/install.ts', ['--help'], { ...cleanEnv(), ...env });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('LIVEKIT_SERVER_BIN');
    expect(result.stdout).toContain('go install github.com/livekit/livekit-server/cmd/server@v1.13.5');
  });
});
