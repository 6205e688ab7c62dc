import fs from 'node:fs';
import path from 'node:path';
import { MemoryError } from '../errors.js';
import { isAlive, trySocketLock, type Lock } from './socket-lock.js';

/** Held by exactly one process per embedded data folder; released on close or when the process dies. */
export type DataDirLock = Lock;

const LOCK_NAME = 'owner.lock';

/**
 * Refuse a data folder that another OS user could reach: it holds the database, the owner's lock
 * and the journal, and everything that protects them rests on the folder being ours alone.
 */
export function checkPrivateDataDir(dataDir: string): void {
  const uid = process.getuid?.();
  if (uid === undefined) return; // no POSIX owners here (Windows)
  const stat = fs.statSync(dataDir);
  if (!stat.isDirectory()) {
    throw new MemoryError(
      'DATA_DIR_UNSAFE',
      `MEMORY_DATA_DIR ${dataDir} is not a folder: point MEMORY_DATA_DIR at a folder (it is created if missing)`,
    );
  }
  if (stat.uid !== uid) {
    throw new MemoryError(
      'DATA_DIR_UNSAFE',
      `the data folder ${dataDir} belongs to uid ${stat.uid}, not to this process (uid ${uid}): another user could read or replace the database. ` +
        `Fix: \`chown -R ${userName(uid)} ${dataDir}\` (or run as its owner)`,
    );
  }
  if ((stat.mode & 0o077) !== 0) {
    throw new MemoryError(
      'DATA_DIR_UNSAFE',
      `the data folder ${dataDir} is open to other users (mode ${(stat.mode & 0o777).toString(8)}): they could read the database or block it. Fix: \`chmod 700 ${dataDir}\``,
    );
  }
}

/** A name for `chown`: the user name when the environment knows it, else the numeric uid. */
export function userName(uid: number): string {
  const name = process.env.USER ?? process.env.LOGNAME;
  return name && /^[A-Za-z0-9_.-]+$/.test(name) ? name : String(uid);
}

/**
 * The owner lock is a Unix socket FILE inside the data folder (see socket-lock.ts): the folder is
 * checked to be ours with mode 0700, so no other OS user can create, bind or remove it, unlike the
 * abstract socket used before, whose name anyone on the machine could bind first.
 */
export async function tryLockDataDir(dataDir: string): Promise<DataDirLock | undefined> {
  checkPrivateDataDir(dataDir);
  return trySocketLock(path.join(dataDir, LOCK_NAME));
}

/**
 * The same kind of lock for any file (journal files: held by the process that appends to it, so a
 * replayer knows whether the writer is still alive). The lock is `<file>.lock`, in the file's own
 * folder, which the caller has checked is private.
 */
export async function tryLockFile(file: string): Promise<DataDirLock | undefined> {
  return trySocketLock(`${path.resolve(file)}.lock`);
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
