/**
 * Finds or builds the livekit-server binary used by `npm run livekit` and the tests.
 *
 * No npm package ships livekit-server, so the fallback is building it from source with Go
 * (pure Go, no cgo; about two minutes on two cores, once). The result lives in the user's cache,
 * outside the repository, and is shared by every checkout.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { LivekitServerError } from './errors.js';
import { isMain } from './main.js';

/** Pinned: v1.13.0/1 and master carry `replace` directives that make `go install pkg@version` fail. */
export const LIVEKIT_SERVER_VERSION = 'v1.13.5';
/** The module path is still livekit-server although the repository is now github.com/livekit/livekit. */
export const LIVEKIT_SERVER_PACKAGE = 'github.com/livekit/livekit-server/cmd/server';

export const OTHER_WAYS_TO_INSTALL = [
  'Install livekit-server another way, then run this again:',
  '  - Homebrew (macOS, Linux):   brew install livekit',
  '  - the official script (Linux): curl -sSL https://get.livekit.io | bash',
  '  - Docker (runs a dev server on ws://127.0.0.1:7880, key devkey, secret secret, instead of this script):',
  '      docker run --rm --network host livekit/livekit-server --dev --bind 127.0.0.1',
  '  - or set LIVEKIT_SERVER_BIN to the path of a livekit-server binary.',
  `Or install Go 1.26 or newer (https://go.dev/dl/) and put \`go\` on PATH: the first run then builds ${LIVEKIT_SERVER_VERSION} from source.`,
].join('\n');

export interface EnsureLivekitServerOptions {
  /** Progress of a first-run build: our own lines and go's output, one line at a time. */
  onProgress?: (line: string) => void;
  /** The environment to resolve PATH, HOME, XDG_CACHE_HOME and LIVEKIT_SERVER_BIN from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/** `${XDG_CACHE_HOME:-$HOME/.cache}/livekit-user-memory/livekit-server-<version>/bin`. */
export function livekitServerCacheBinDir(env: NodeJS.ProcessEnv = process.env): string {
  const cacheHome = env.XDG_CACHE_HOME || path.join(env.HOME || os.homedir(), '.cache');
  return path.join(cacheHome, 'livekit-user-memory', `livekit-server-${LIVEKIT_SERVER_VERSION}`, 'bin');
}

export async function isExecutableFile(file: string): Promise<boolean> {
  try {
    if (!(await stat(file)).isFile()) return false;
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Like `command -v`: the first executable `name` on the PATH of `env`. */
export async function findOnPath(name: string, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (await isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

/**
 * The path of a runnable livekit-server: LIVEKIT_SERVER_BIN, else `livekit-server` on PATH, else
 * the cached build, else a new build with `go install` into the cache.
 */
export async function ensureLivekitServer(options: EnsureLivekitServerOptions = {}): Promise<string> {
  const env = options.env ?? process.env;
  const progress = options.onProgress ?? (() => {});

  const explicit = env.LIVEKIT_SERVER_BIN;
  if (explicit) {
    const resolved = path.resolve(explicit);
    if (await isExecutableFile(resolved)) return resolved;
    throw new LivekitServerError(
      'BIN_NOT_EXECUTABLE',
      `LIVEKIT_SERVER_BIN is set to ${explicit}, which is not an executable file. ` +
        'Point it at a livekit-server binary (and `chmod +x` it), or unset it to use livekit-server from PATH or a build from source.',
    );
  }

  const onPath = await findOnPath('livekit-server', env);
  if (onPath) return onPath;

  const binDir = livekitServerCacheBinDir(env);
  const target = path.join(binDir, 'livekit-server');
  if (await isExecutableFile(target)) return target;

  // Parallel test files may all arrive here on a first run: one builds, the others wait.
  await mkdir(binDir, { recursive: true });
  return withInstallLock(path.join(binDir, '..', 'install.lock'), progress, async () => {
    if (await isExecutableFile(target)) return target;
    // `go install` names the binary after its package directory: `server`. One that is already
    // there is a finished build whose rename did not happen (or a build run by hand).
    const built = path.join(binDir, 'server');
    if (!(await isExecutableFile(built))) {
      const go = await findOnPath('go', env);
      if (!go) {
        throw new LivekitServerError(
          'GO_NOT_FOUND',
          `livekit-server was not found (not in LIVEKIT_SERVER_BIN, not on PATH, not in ${binDir}) and there is no \`go\` on PATH to build it.\n` +
            OTHER_WAYS_TO_INSTALL,
        );
      }
      await goInstall(go, binDir, env, progress);
    }
    await rename(built, target);
    await checkRuns(target);
    progress(`livekit-server ${LIVEKIT_SERVER_VERSION} is ready: ${target}`);
    return target;
  });
}

async function goInstall(
  go: string,
  binDir: string,
  env: NodeJS.ProcessEnv,
  progress: (line: string) => void,
): Promise<void> {
  const spec = `${LIVEKIT_SERVER_PACKAGE}@${LIVEKIT_SERVER_VERSION}`;
  progress(`Building livekit-server ${LIVEKIT_SERVER_VERSION} from source with Go (first run only, a few minutes)...`);
  progress(`$ GOBIN=${binDir} ${go} install ${spec}`);
  const started = Date.now();
  const tail: string[] = [];
  const child = spawn(go, ['install', spec], {
    env: { ...env, GOBIN: binDir, CGO_ENABLED: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const onLine = (line: string) => {
    tail.push(line);
    if (tail.length > 30) tail.shift();
    progress(line);
  };
  readline.createInterface({ input: child.stdout }).on('line', onLine);
  readline.createInterface({ input: child.stderr }).on('line', onLine);
  // Compiling prints nothing for minutes after the downloads; say that it is still working.
  const heartbeat = setInterval(
    () => progress(`still building (${Math.round((Date.now() - started) / 1000)} s)...`),
    30_000,
  );
  const outcome = await new Promise<{ code: number | null; error?: Error }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, error }));
    child.once('close', (code) => resolve({ code }));
  }).finally(() => clearInterval(heartbeat));
  if (outcome.code !== 0) {
    throw new LivekitServerError(
      'INSTALL_FAILED',
      `\`go install ${spec}\` failed (${outcome.error?.message ?? `exit code ${outcome.code}`}). Last output:\n` +
        `${tail.join('\n')}\n` +
        'It needs Go 1.26+ (or an older Go >= 1.21 with GOTOOLCHAIN=auto) and access to the Go module proxy (GOPROXY).\n' +
        OTHER_WAYS_TO_INSTALL,
    );
  }
  progress(`Built in ${Math.round((Date.now() - started) / 1000)} s.`);
}

/** A half-copied or foreign `server` binary should fail here, not as a confusing startup error later. */
async function checkRuns(binary: string): Promise<void> {
  const output = await new Promise<string>((resolve) => {
    const child = spawn(binary, ['--version'], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 15_000 });
    let text = '';
    child.stdout.on('data', (d) => (text += d));
    child.stderr.on('data', (d) => (text += d));
    child.once('error', (error) => resolve(String(error)));
    child.once('close', () => resolve(text));
  });
  if (!output.includes(LIVEKIT_SERVER_VERSION.slice(1))) {
    throw new LivekitServerError(
      'INSTALL_FAILED',
      `${binary} does not report version ${LIVEKIT_SERVER_VERSION} (\`--version\` printed: ${output.trim() || 'nothing'}). ` +
        `Delete it and run \`npm run livekit:install\` again.`,
    );
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A lock file holding the owner's pid; a lock whose owner died is taken over. */
async function withInstallLock<T>(
  lockFile: string,
  progress: (line: string) => void,
  work: () => Promise<T>,
): Promise<T> {
  const deadline = Date.now() + 30 * 60_000;
  let announced = false;
  for (;;) {
    try {
      const handle = await open(lockFile, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const owner = Number.parseInt(await readFile(lockFile, 'utf8').catch(() => ''), 10);
    const age = Date.now() - ((await stat(lockFile).catch(() => undefined))?.mtimeMs ?? 0);
    // An empty file younger than a second is a lock being written right now.
    if ((Number.isInteger(owner) && !isAlive(owner)) || (!Number.isInteger(owner) && age > 1000)) {
      await rm(lockFile, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new LivekitServerError(
        'INSTALL_FAILED',
        `Another livekit-server install (pid ${owner}) holds ${lockFile} for 30 minutes. Stop it or delete the file.`,
      );
    }
    if (!announced) {
      progress(`Waiting for another livekit-server install (pid ${owner}) to finish...`);
      announced = true;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  try {
    return await work();
  } finally {
    await rm(lockFile, { force: true });
  }
}

const HELP = `Usage: npm run livekit:install [-- --help]

Prints the path of a runnable livekit-server ${LIVEKIT_SERVER_VERSION}, building it first if needed.
Looks in this order:
  1. LIVEKIT_SERVER_BIN (must be an executable file)
  2. livekit-server on PATH
  3. ${livekitServerCacheBinDir()}/livekit-server
  4. builds it there: go install ${LIVEKIT_SERVER_PACKAGE}@${LIVEKIT_SERVER_VERSION}
     (needs Go 1.26+ on PATH and the Go module proxy; a few minutes, once)
Progress goes to stderr, the path to stdout.
`;

if (isMain(import.meta.url)) {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(HELP);
  } else if (args.length > 0) {
    process.stderr.write(`Unknown argument: ${args[0]}\n${HELP}`);
    process.exitCode = 2;
  } else {
    try {
      const binary = await ensureLivekitServer({ onProgress: (line) => process.stderr.write(`${line}\n`) });
      process.stdout.write(`${binary}\n`);
    } catch (error) {
      process.stderr.write(`${error instanceof LivekitServerError ? error.message : String(error)}\n`);
      process.exitCode = 1;
    }
  }
}
