import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Extension, PGlite } from '@electric-sql/pglite';
import { MemoryError } from '../errors.js';
import { createPgliteTransport } from '../transports/pglite.js';
import { importOptional, isMissingModule } from '../optional-dependency.js';
import type { SqlTransport } from '../transports/transport.js';
import { Gate } from './gate.js';
import {
  checkPrivateDataDir,
  readOwnerInfo,
  removeOwnerInfo,
  tryLockDataDir,
  writeOwnerInfo,
  type OwnerInfo,
} from './lock.js';
import { DEFAULTS } from '../defaults.js';
import { EmbeddedSocketServer } from './socket-server.js';

/**
 * - `owner`: open the folder and (with `serve`) serve it; fail with DATA_DIR_LOCKED if another process owns it.
 * - `client`: connect to the owner's socket; fail if nobody serves the folder.
 * - `auto`: connect to a serving owner if there is one, else become the owner.
 */
export type EmbeddedRole = 'auto' | 'owner' | 'client';

export interface EmbeddedOptions {
  dataDir: string;
  role?: EmbeddedRole;
  /** Whether an owner serves the folder on a socket for other processes (default true). */
  serve?: boolean;
  /** How long a client or `auto` waits for a busy folder's owner (default 10 s). */
  waitMs?: number;
  maxConnections?: number;
  /** Clients: close a connection idle for this long (default 30 s; 0: keep). */
  idleTimeoutMs?: number;
}

const SOCKET_PORT = 5432;
// sun_path holds 108 bytes on Linux and 104 on macOS, terminator included.
const MAX_SOCKET_PATH = 100;

function socketDirFor(dataDir: string): string {
  if (path.join(dataDir, `.s.PGSQL.${SOCKET_PORT}`).length <= MAX_SOCKET_PATH) return dataDir;
  const digest = createHash('sha256').update(dataDir).digest('hex').slice(0, 16);
  const dir = path.join(os.tmpdir(), `lk-memory-${digest}`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  // The temporary folder is shared: another user could have made this folder first, to plant a
  // socket of their own that clients would then take for the database.
  const stat = fs.statSync(dir);
  const uid = process.getuid?.();
  if (uid !== undefined && (stat.uid !== uid || (stat.mode & 0o077) !== 0)) {
    throw new MemoryError(
      'DATA_DIR_UNSAFE',
      `the socket folder ${dir} (used because ${dataDir} is too long for a socket path) belongs to uid ${stat.uid} with mode ${(stat.mode & 0o777).toString(8)}: ` +
        `remove it (\`rm -r ${dir}\`) or use a shorter MEMORY_DATA_DIR`,
    );
  }
  return dir;
}

async function connectToOwner(
  info: OwnerInfo & { socketDir: string },
  options: EmbeddedOptions,
): Promise<SqlTransport> {
  // Clients speak the PostgreSQL wire protocol to the owner's socket: they need pg, not PGlite.
  const { createPostgresTransport } = await importOptional(
    'pg',
    'a job process of the embedded database (a client of the process that serves it)',
    () => import('../transports/postgres.js'),
  );
  return createPostgresTransport({
    kind: 'embedded-socket',
    location: `embedded ${options.dataDir} (via the socket of pid ${info.pid})`,
    maxConnections: options.maxConnections ?? 4,
    idleTimeoutMs: options.idleTimeoutMs,
    // The owner's socket server relays each client's messages to PGlite; unnamed statements only,
    // as before (named ones were not measured there).
    preparedStatements: false,
    config: { host: info.socketDir, port: info.port, user: 'postgres', database: 'postgres' },
  });
}

async function becomeOwner(dataDir: string, release: () => Promise<void>, serve: boolean): Promise<SqlTransport> {
  const location = `embedded ${dataDir}`;
  let db: PGlite;
  try {
    const what = 'the embedded database (no DATABASE_URL)';
    const { PGlite } = await importOptional('@electric-sql/pglite', what, () => import('@electric-sql/pglite'));
    // pg_trgm and btree_gin: memory_search's trigram matching and its per-user GIN indexes.
    const [{ pg_trgm }, { btree_gin }] = await Promise.all([
      importOptional('@electric-sql/pglite', what, () => import('@electric-sql/pglite/contrib/pg_trgm')),
      importOptional('@electric-sql/pglite', what, () => import('@electric-sql/pglite/contrib/btree_gin')),
    ]);
    // pgvector, when @electric-sql/pglite-pgvector is installed (optional): vectors for embeddings.
    const vector = await loadPgliteVector();
    db = await PGlite.create(path.join(dataDir, 'pgdata'), {
      extensions: vector ? { pg_trgm, btree_gin, vector } : { pg_trgm, btree_gin },
    });
  } catch (error) {
    await release();
    if (error instanceof MemoryError) throw error;
    throw new MemoryError('BACKEND_UNAVAILABLE', `cannot open the embedded database in ${dataDir}: ${String(error)}`, {
      cause: error,
    });
  }
  const gate = new Gate();
  let server: EmbeddedSocketServer | undefined;
  const info: OwnerInfo = { pid: process.pid, port: SOCKET_PORT, startedAt: new Date().toISOString() };
  if (serve) {
    const socketDir = socketDirFor(dataDir);
    const socketPath = path.join(socketDir, `.s.PGSQL.${SOCKET_PORT}`);
    // We hold the lock, so a socket file here is a dead owner's leftover.
    fs.rmSync(socketPath, { force: true });
    server = new EmbeddedSocketServer(db, gate);
    await server.listen(socketPath);
    fs.chmodSync(socketPath, 0o600);
    info.socketDir = socketDir;
  }
  writeOwnerInfo(dataDir, info);
  return createPgliteTransport(db, gate, location, async () => {
    removeOwnerInfo(dataDir);
    await server?.close();
    await db.close();
    await release();
  });
}

/**
 * PGlite's pgvector extension, or undefined when its package is not installed: it is optional, and
 * without it the embedded database has no vectors (search stays lexical; the doctor says so).
 */
async function loadPgliteVector(): Promise<Extension | undefined> {
  try {
    const { vector } = await import('@electric-sql/pglite-pgvector');
    return vector as Extension;
  } catch (error) {
    if (isMissingModule(error, '@electric-sql/pglite-pgvector')) return undefined;
    throw error;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Open the embedded database in `dataDir` as its owner or as a client of its owner. */
export async function openEmbedded(options: EmbeddedOptions): Promise<SqlTransport> {
  const dataDir = path.resolve(options.dataDir);
  const role = options.role ?? 'auto';
  const serve = options.serve ?? true;
  try {
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new MemoryError('INVALID_CONFIG', `cannot create MEMORY_DATA_DIR ${dataDir}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  // Every role: a client trusts owner.json in this folder to name the socket it connects to.
  checkPrivateDataDir(dataDir);
  const deadline = Date.now() + (options.waitMs ?? DEFAULTS.embeddedWaitMs);
  for (;;) {
    if (role !== 'client') {
      const lock = await tryLockDataDir(dataDir);
      if (lock) return becomeOwner(dataDir, () => lock.release(), serve);
    }
    const owner = readOwnerInfo(dataDir);
    if (role === 'owner') {
      throw new MemoryError(
        'DATA_DIR_LOCKED',
        `the embedded database in ${dataDir} is already owned by ${owner ? `process ${owner.pid}` : 'another process'}; ` +
          'only one process may open it: stop that process, or connect to it as a client (role "client")',
      );
    }
    if (owner?.socketDir) return connectToOwner({ ...owner, socketDir: owner.socketDir }, options);
    if (Date.now() >= deadline) {
      throw new MemoryError(
        'BACKEND_UNAVAILABLE',
        role === 'client'
          ? `no process serves the embedded database in ${dataDir}: call serveMemory() from livekit-user-memory/plugins ` +
              "in your worker's main process before it starts (this repository's worker, `npm start`, does), " +
              'or set DATABASE_URL to a PostgreSQL server (recommended in production)'
          : `the embedded database in ${dataDir} stayed busy (owned by ${owner ? `process ${owner.pid}` : 'another process'}, which does not serve it)`,
      );
    }
    // The owner is starting, or is a short-lived command that does not serve: wait for it.
    await sleep(50);
  }
}
