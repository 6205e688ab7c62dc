import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/** Held by exactly one process per embedded data folder; released on close or when the process dies. */
export interface DataDirLock {
  release(): Promise<void>;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * On Linux the lock is a socket bound in the abstract namespace under a name derived from the
 * folder's real path: binding is atomic, and the kernel frees the name the instant the owner
 * dies, even by SIGKILL, so a crashed worker never leaves a stale lock and no two processes can
 * both "clean up" one. Elsewhere a pid file created with O_EXCL stands in; a dead pid's file is
 * taken over.
 */
export async function tryLockDataDir(dataDir: string): Promise<DataDirLock | undefined> {
  return process.platform === 'linux' ? tryAbstractSocketLock(fs.realpathSync(dataDir)) : tryPidFileLock(dataDir);
}

/**
 * The same kind of lock for any file (journal files: held by the process that appends to it, so a
 * replayer knows whether the writer is still alive).
 */
export async function tryLockFile(file: string): Promise<DataDirLock | undefined> {
  return process.platform === 'linux' ? tryAbstractSocketLock(path.resolve(file)) : tryPidFileLock(`${file}.owner`);
}

async function tryAbstractSocketLock(key: string): Promise<DataDirLock | undefined> {
  const digest = createHash('sha256').update(key).digest('hex').slice(0, 32);
  const server = net.createServer((socket) => socket.destroy());
  const bound = await new Promise<boolean>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => (error.code === 'EADDRINUSE' ? resolve(false) : reject(error)));
    server.listen(`\0livekit-user-memory:${digest}`, () => resolve(true));
  });
  if (!bound) return undefined;
  server.unref(); // the lock alone must not keep a process alive
  return { release: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

async function tryPidFileLock(target: string): Promise<DataDirLock | undefined> {
  const file = fs.existsSync(target) && fs.statSync(target).isDirectory() ? path.join(target, 'owner.lock') : `${target}.lock`;
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      fs.writeSync(fd, String(process.pid));
      fs.closeSync(fd);
      return { release: async () => fs.rmSync(file, { force: true }) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const pid = Number(fs.readFileSync(file, 'utf8'));
      if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) return undefined;
      fs.rmSync(file, { force: true });
    }
  }
  return undefined;
}

/** What the owner publishes so that other processes can find its socket. */
export interface OwnerInfo {
  pid: number;
  /** Folder holding the PostgreSQL socket file `.s.PGSQL.<port>`, the form libpq and node-postgres take as `host`; absent when the owner does not serve. */
  socketDir?: string;
  port: number;
  startedAt: string;
}

const OWNER_FILE = 'owner.json';

export function writeOwnerInfo(dataDir: string, info: OwnerInfo): void {
  const target = path.join(dataDir, OWNER_FILE);
  const temp = `${target}.${process.pid}.tmp`;
  fs.writeFileSync(temp, JSON.stringify(info, null, 2), { mode: 0o600 });
  fs.renameSync(temp, target);
}

/** The live owner's info, or undefined when there is none (no file, or its process is gone). */
export function readOwnerInfo(dataDir: string): OwnerInfo | undefined {
  try {
    const info = JSON.parse(fs.readFileSync(path.join(dataDir, OWNER_FILE), 'utf8')) as OwnerInfo;
    return Number.isInteger(info.pid) && isAlive(info.pid) ? info : undefined;
  } catch {
    return undefined;
  }
}

export function removeOwnerInfo(dataDir: string): void {
  const file = path.join(dataDir, OWNER_FILE);
  const current = readOwnerInfo(dataDir);
  if (!current || current.pid === process.pid) fs.rmSync(file, { force: true });
}
