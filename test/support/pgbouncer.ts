import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { freePort } from '../../scripts/livekit/ports.js';

/**
 * A real PgBouncer in transaction pooling mode, the mode of Supabase's pooled connection string
 * (port 6543) and of most hosted poolers: a client gets a server connection for one transaction
 * (or one statement outside a transaction) and the next one may run on another server
 * connection. Session state (SET, session advisory locks, LISTEN, named prepared statements, temp
 * tables) does not follow the client. Debian's pgbouncer 1.18 has no `max_prepared_statements`
 * at all (1.21+ does, default 0 = off), so a named prepared statement breaks as on the pooler.
 *
 * Started as a child process (not a daemon), listening on 127.0.0.1 on a free port, configured in
 * a temporary folder that `stop()` removes (the log is kept for post-mortems).
 */

export type PgBouncerErrorCode = 'PGBOUNCER_NOT_INSTALLED' | 'PGBOUNCER_START_FAILED';

export class PgBouncerError extends Error {
  override readonly name = 'PgBouncerError';
  constructor(
    readonly code: PgBouncerErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface PgBouncerOptions {
  /** The PostgreSQL behind the pooler (default 127.0.0.1:5432), e.g. a PgWireProxy's port. */
  upstream?: { host: string; port: number };
  /** Server connections per (database, user) pair (default 10). */
  poolSize?: number;
  /**
   * Seconds before retrying a server whose login failed. PgBouncer's default is 15 s, which keeps
   * every client waiting long after the database is back; ours is 1.
   */
  serverLoginRetrySec?: number;
  /** Extra `[pgbouncer]` settings, written as `key = value`. */
  settings?: Record<string, string | number>;
  /** Where PgBouncer's log goes (default: pgbouncer.log in a temp folder of its own). */
  logFile?: string;
}

export interface PgBouncer {
  host: '127.0.0.1';
  port: number;
  pid: number;
  /** The same URL with host and port replaced by the pooler's: what a worker would be given. */
  urlFor(databaseUrl: string): string;
  logFile: string;
  /** The end of PgBouncer's log, for a failure message. */
  logTail(lines?: number): string;
  /** SIGTERM (PgBouncer's fast shutdown: clients are cut); resolves once it has exited. Idempotent. */
  stop(): Promise<void>;
}

const INSTALL_HINT =
  'PgBouncer is not installed: `apt-get update && apt-get install -y pgbouncer` on Debian/Ubuntu ' +
  '(`brew install pgbouncer` on macOS), or put a pgbouncer binary on PATH (or set PGBOUNCER_BIN).';

/** Where packages put pgbouncer outside a non-root PATH (Debian: /usr/sbin). */
export const PGBOUNCER_EXTRA_DIRS = ['/usr/sbin', '/usr/local/sbin', '/opt/homebrew/bin'];

/** The pgbouncer executable: PGBOUNCER_BIN, PATH, or Debian's /usr/sbin (not on a non-root PATH). */
export function findPgBouncer(env: NodeJS.ProcessEnv = process.env, extraDirs = PGBOUNCER_EXTRA_DIRS): string {
  if (env.PGBOUNCER_BIN) {
    try {
      fs.accessSync(env.PGBOUNCER_BIN, fs.constants.X_OK);
      return env.PGBOUNCER_BIN;
    } catch {
      throw new PgBouncerError(
        'PGBOUNCER_NOT_INSTALLED',
        `PGBOUNCER_BIN=${env.PGBOUNCER_BIN} is not an executable file. ${INSTALL_HINT}`,
      );
    }
  }
  const dirs = [...(env.PATH ?? '').split(path.delimiter), ...extraDirs];
  for (const dir of dirs.filter(Boolean)) {
    const candidate = path.join(dir, 'pgbouncer');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  throw new PgBouncerError('PGBOUNCER_NOT_INSTALLED', INSTALL_HINT);
}

/**
 * PgBouncer refuses to run as root ("PgBouncer should not run as root") unless told to switch to
 * another user with -u; the files it reads then have to be readable by that user, which they are
 * (0755 folder, 0644 files, nothing secret in them: auth is trust).
 */
function userSwitch(): string[] {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return [];
  for (const user of ['postgres', 'nobody']) {
    if (spawnSync('id', ['-u', user], { stdio: 'ignore' }).status === 0) return ['-u', user];
  }
  throw new PgBouncerError(
    'PGBOUNCER_START_FAILED',
    'running as root, PgBouncer needs an unprivileged user to switch to (-u), and neither `postgres` nor `nobody` exists',
  );
}

function iniFile(options: PgBouncerOptions, port: number, authFile: string): string {
  const upstream = options.upstream ?? { host: '127.0.0.1', port: 5432 };
  const settings: Record<string, string | number> = {
    listen_addr: '127.0.0.1',
    listen_port: port,
    // No Unix socket: nothing to clean up, and no clash between parallel runs on /tmp/.s.PGSQL.6432.
    unix_socket_dir: '',
    pool_mode: 'transaction',
    auth_type: 'trust',
    // With trust, the user name must still be listed in the auth_file.
    auth_file: authFile,
    default_pool_size: options.poolSize ?? 10,
    max_client_conn: 1000,
    server_login_retry: options.serverLoginRetrySec ?? 1,
    // A client sends its own timeouts; a waiting client must not outlive a test.
    query_wait_timeout: 30,
    log_connections: 0,
    log_disconnections: 0,
    ...options.settings,
  };
  return [
    '[databases]',
    // Every database name goes to the same server: tests create a database per suite.
    `* = host=${upstream.host} port=${upstream.port}`,
    '',
    '[pgbouncer]',
    ...Object.entries(settings).map(([key, value]) => `${key} = ${value}`),
    '',
  ].join('\n');
}

/** Start PgBouncer on a free port; retried on new ports if a bind race is lost. */
export async function startPgBouncer(options: PgBouncerOptions = {}, attempts = 3): Promise<PgBouncer> {
  const binary = findPgBouncer();
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(binary, options, await freePort());
    } catch (error) {
      const lostRace = error instanceof PgBouncerError && /address already in use/i.test(error.message);
      if (!lostRace || attempt >= attempts) throw error;
    }
  }
}

async function startOnce(binary: string, options: PgBouncerOptions, port: number): Promise<PgBouncer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lkm-pgbouncer-'));
  fs.chmodSync(dir, 0o755);
  const authFile = path.join(dir, 'users.txt');
  const users = new Set(['postgres', os.userInfo().username]);
  fs.writeFileSync(authFile, [...users].map((u) => `"${u}" ""\n`).join(''), { mode: 0o644 });
  const ini = path.join(dir, 'pgbouncer.ini');
  fs.writeFileSync(ini, iniFile(options, port, authFile), { mode: 0o644 });
  const logFile = options.logFile ?? path.join(dir, 'pgbouncer.log');
  const log = fs.createWriteStream(logFile, { flags: 'a' });
  const lines: string[] = [];

  const child: ChildProcess = spawn(binary, [...userSwitch(), ini], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const ready = new Promise<void>((resolve, reject) => {
    for (const stream of [child.stdout!, child.stderr!]) {
      readline.createInterface({ input: stream }).on('line', (line) => {
        lines.push(line);
        if (lines.length > 2000) lines.splice(0, 1000);
        log.write(`${line}\n`);
        if (/ process up: /.test(line)) resolve();
      });
    }
    child.once('error', (error) =>
      reject(
        new PgBouncerError('PGBOUNCER_START_FAILED', `could not run ${binary}: ${error.message}. ${INSTALL_HINT}`),
      ),
    );
    child.once('exit', (code, signal) =>
      reject(
        new PgBouncerError(
          'PGBOUNCER_START_FAILED',
          `pgbouncer exited (code ${code}, signal ${signal}) before it was listening on 127.0.0.1:${port}; its log:\n${lines.slice(-20).join('\n')}`,
        ),
      ),
    );
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  try {
    await ready;
  } catch (error) {
    process.removeListener('exit', killOnExit);
    child.kill('SIGKILL');
    await exited;
    log.end();
    throw error;
  } finally {
    clearTimeout(timer);
  }

  let stopping: Promise<void> | undefined;
  return {
    host: '127.0.0.1',
    port,
    pid: child.pid!,
    logFile,
    urlFor(databaseUrl: string) {
      const url = new URL(databaseUrl);
      url.hostname = '127.0.0.1';
      url.port = String(port);
      return url.toString();
    },
    logTail: (n = 30) => lines.slice(-n).join('\n'),
    stop() {
      stopping ??= (async () => {
        process.removeListener('exit', killOnExit);
        child.kill('SIGTERM');
        const force = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(force);
        await new Promise<void>((resolve) => log.end(resolve));
        // The log stays for post-mortems (it holds no secrets); the rest goes.
        for (const file of [ini, authFile]) fs.rmSync(file, { force: true });
      })();
      return stopping;
    },
  };
}
