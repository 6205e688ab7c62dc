import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/** An exclusive lock held by one live process; released on release() or when the process dies. */
export interface Lock {
  release(): Promise<void>;
}

// sun_path holds 108 bytes on Linux and 104 on macOS, terminator included.
const MAX_SOCKET_PATH = 100;
/** A takeover takes milliseconds; a takeover marker this old was left by a process that died in one. */
const STALE_TAKEOVER_MS = 10_000;
const CONNECT_TIMEOUT_MS = 2_000;

/**
 * A lock that is a Unix domain socket FILE, bound and listened on by its holder:
 * - it lives in a folder the caller has checked is private (ours, mode 0700), and a filesystem
 *   socket obeys its folder's permissions, so no other OS user can bind, remove or replace it;
 * - binding is atomic (EADDRINUSE when the file exists), so two processes never both hold it;
 * - connecting tells whether the holder is alive: a SIGKILLed holder leaves a socket file that
 *   refuses connections (ECONNREFUSED), which the next process replaces (see takeOver).
 */
export async function trySocketLock(lockPath: string): Promise<Lock | undefined> {
  const address = socketAddress(lockPath);
  if (!address) return tryPidFileLock(lockPath);
  try {
    const bound = await bind(address);
    if (bound) return bound;
    if (await isHeld(address)) return undefined;
    return await takeOver(lockPath, address);
  } finally {
    address.close();
  }
}

interface Address {
  /** What to bind or connect to: the path itself, or a short alias of it. */
  path: string;
  /** Keeps the alias valid while a lock made through it is held. */
  retain(): () => void;
  close(): void;
}

/**
 * A path short enough for sun_path. A longer one is reached through /proc/self/fd/<folder fd>/<name>
 * on Linux (the kernel resolves it to the same file); elsewhere undefined (pid-file fallback).
 */
function socketAddress(lockPath: string): Address | undefined {
  if (Buffer.byteLength(lockPath) <= MAX_SOCKET_PATH)
    return { path: lockPath, retain: () => () => {}, close: () => {} };
  if (process.platform !== 'linux') return undefined;
  const fd = fs.openSync(path.dirname(lockPath), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  let holders = 1; // the address itself, until close()
  const drop = () => {
    holders -= 1;
    if (holders === 0) fs.closeSync(fd);
  };
  return {
    path: `/proc/self/fd/${fd}/${path.basename(lockPath)}`,
    retain: () => {
      holders += 1;
      let done = false;
      return () => {
        if (!done) {
          done = true;
          drop();
        }
      };
    },
    close: () => drop(),
  };
}

/** Bind and listen; undefined when the file already exists (held, or a dead holder's leftover). */
async function bind(address: Address): Promise<Lock | undefined> {
  const server = net.createServer((socket) => socket.destroy());
  const bound = await new Promise<boolean>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      error.code === 'EADDRINUSE' ? resolve(false) : reject(error),
    );
    server.listen(address.path, () => resolve(true));
  });
  if (!bound) return undefined;
  server.unref(); // the lock alone must not keep a process alive
  // The folder is private already; the file's own mode is a second fence.
  fs.chmodSync(address.path, 0o600);
  // Node unlinks the socket file on close, through the same path: keep an alias valid until then.
  const releaseAddress = address.retain();
  return {
    release: () =>
      new Promise<void>((resolve) =>
        server.close(() => {
          releaseAddress();
          resolve();
        }),
      ),
  };
}

/** Whether a live process holds the socket: it accepts connections. A dead holder's file refuses them. */
function isHeld(address: Address): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(address.path);
    const timer = setTimeout(() => {
      // Accepted into no backlog in time: a live but stalled holder, never a dead one.
      socket.destroy();
      resolve(true);
    }, CONNECT_TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(true);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (error.code === 'ECONNREFUSED' || error.code === 'ENOENT' || error.code === 'ENOTSOCK') resolve(false);
      else reject(error);
    });
  });
}

/**
 * Replace a dead holder's socket file. Takeovers are serialised by a marker folder (mkdir is
 * atomic): without it, two processes that both saw the dead file could each remove what the other
 * just bound. Under the marker the file is checked again before it is removed, and the new bind is
 * atomic, so a process that bound the path in the meantime keeps it.
 */
async function takeOver(lockPath: string, address: Address): Promise<Lock | undefined> {
  const marker = `${lockPath}.takeover`;
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      fs.mkdirSync(marker, { mode: 0o700 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      // Another takeover is under way, or its process died in the middle of one.
      const age = Date.now() - (fs.statSync(marker, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if (age < STALE_TAKEOVER_MS) return undefined;
      fs.rmSync(marker, { recursive: true, force: true });
      continue;
    }
    try {
      if (await isHeld(address)) return undefined;
      fs.rmSync(lockPath, { force: true });
      return await bind(address);
    } finally {
      fs.rmSync(marker, { recursive: true, force: true });
    }
  }
  return undefined;
}

/** Whether a process exists (EPERM: it does, but belongs to another user). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Fallback where a socket path would be too long and there is no /proc (macOS with a deep data
 * folder): a pid file created with O_EXCL in the same private folder; a dead pid's file is
 * taken over.
 */
function tryPidFileLock(file: string): Lock | undefined {
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      fs.writeSync(fd, String(process.pid));
      fs.closeSync(fd);
      return { release: () => Promise.resolve(fs.rmSync(file, { force: true })) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const pid = Number(fs.readFileSync(file, 'utf8'));
      if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) return undefined;
      fs.rmSync(file, { force: true });
    }
  }
  return undefined;
}
