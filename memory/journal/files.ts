import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { MemoryError } from '../errors.js';
import { userName, type DataDirLock } from '../embedded/lock.js';
import { trySocketLock } from '../embedded/socket-lock.js';

/** The file-system side of the journal: its folder, its files, their checks, locks and atomic rewrites. */

export const SUFFIX = '.jsonl';
export const REJECTED_SUFFIX = '.rejected';

export type { DataDirLock };

/**
 * Lock sockets of journal files live in a sibling folder (`<journal>.locks`, private as well), so
 * the journal folder itself holds only regular files: the journal files, their `.rejected`
 * companions and the key.
 */
export function locksDirOf(dir: string): string {
  return path.join(path.dirname(dir), `${path.basename(dir)}.locks`);
}

/**
 * The lock of a journal file, held by its writer while alive: a replayer that gets it knows the
 * writer is gone. A socket file in the private locks folder (see embedded/socket-lock.ts), so no
 * other OS user can take or block it.
 */
export function lockJournalFile(dir: string, file: string): Promise<DataDirLock | undefined> {
  return trySocketLock(path.join(locksDirOf(dir), `${path.basename(file)}.lock`));
}

const uid = (): number | undefined => process.getuid?.();

/**
 * Create the journal folder (0700) or check the existing one. Refused when another OS user could
 * write in it (they could place files that this process, perhaps root, would then replay) or when
 * it is not ours: a typed error that says how to fix it.
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  const stat = await fsp.stat(dir);
  const me = uid();
  if (!stat.isDirectory())
    throw new MemoryError('JOURNAL_UNSAFE', `the journal folder ${dir} is not a folder: remove it (\`rm ${dir}\`)`);
  if (me === undefined) return;
  if (stat.uid !== me) {
    throw new MemoryError(
      'JOURNAL_UNSAFE',
      `the journal folder ${dir} belongs to uid ${stat.uid}, not to this process (uid ${me}): its files could be anyone's writes. ` +
        `Fix: \`chown -R ${userName(me)} ${dir} && chmod 700 ${dir}\` (or run as its owner)`,
    );
  }
  if ((stat.mode & 0o022) !== 0) {
    throw new MemoryError(
      'JOURNAL_UNSAFE',
      `the journal folder ${dir} is writable by other users (mode ${(stat.mode & 0o777).toString(8)}): they could place writes in it for this process to replay. Fix: \`chmod 700 ${dir}\``,
    );
  }
}

export type OpenedFile = 'missing' | { unsafe: string } | { handle: fsp.FileHandle; stat: fs.Stats };

/**
 * Open a file of the journal folder for reading, refusing what another user could have written:
 * a symlink (O_NOFOLLOW), anything but a regular file, a file owned by another uid, or a file
 * writable by group or others (`secret`: readable by them either). An unsafe file is not read.
 */
export async function openPrivateFile(file: string, options: { secret?: boolean } = {}): Promise<OpenedFile> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'missing';
    if (code === 'ELOOP')
      return { unsafe: `${file} is a symbolic link: remove it (\`rm ${file}\`); the journal reads only its own files` };
    throw error;
  }
  const stat = await handle.stat();
  const me = uid();
  const open = options.secret ? 0o077 : 0o022;
  let unsafe: string | undefined;
  if (!stat.isFile()) unsafe = `${file} is not a regular file: remove it (\`rm ${file}\`)`;
  else if (me !== undefined && stat.uid !== me) {
    unsafe = `${file} belongs to uid ${stat.uid}, not to this process (uid ${me}), so it is not read. If it is yours: \`chown ${userName(me)} ${file}\`; otherwise remove it`;
  } else if (me !== undefined && (stat.mode & open) !== 0) {
    unsafe = `${file} has mode ${(stat.mode & 0o777).toString(8)}: others could ${options.secret ? 'read or change' : 'change'} it, so it is not read. If it is intact: \`chmod 600 ${file}\``;
  }
  if (unsafe) {
    await handle.close();
    return { unsafe };
  }
  return { handle, stat };
}

/** This journal's files in the folder (one database's: named by its target id), oldest first. */
export async function listJournalFiles(dir: string, prefix: string): Promise<string[]> {
  try {
    return (await fsp.readdir(dir))
      .filter((f) => f.startsWith(`${prefix}-`) && f.endsWith(SUFFIX))
      .map((f) => path.join(dir, f))
      .sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/** The `.rejected` companions of this journal's files in the folder. */
export async function listRejectedFiles(dir: string, prefix: string): Promise<string[]> {
  return (await fsp.readdir(dir).catch(() => [] as string[]))
    .filter((f) => f.startsWith(`${prefix}-`) && f.endsWith(REJECTED_SUFFIX))
    .map((f) => path.join(dir, f))
    .sort();
}

/** Journal files whose lock socket outlived them: writers killed after their file was emptied and removed. */
export async function listOrphanLocks(dir: string, prefix: string): Promise<string[]> {
  const locks = await fsp.readdir(locksDirOf(dir)).catch(() => [] as string[]);
  const files = new Set(await fsp.readdir(dir).catch(() => [] as string[]));
  return locks
    .filter(
      (f) => f.startsWith(`${prefix}-`) && f.endsWith(`${SUFFIX}.lock`) && !files.has(f.slice(0, -'.lock'.length)),
    )
    .map((f) => path.join(dir, f.slice(0, -'.lock'.length)));
}

/** Replace a file's contents atomically: a crash leaves either the old or the new file. */
export async function rewriteAtomically(file: string, text: string): Promise<void> {
  if (text === '') {
    await fsp.rm(file, { force: true });
  } else {
    const temp = `${file}.${process.pid}.tmp`;
    await fsp.rm(temp, { force: true });
    const handle = await fsp.open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(temp, file);
  }
  await syncDir(path.dirname(file));
}

/** Keep set-aside lines (JSON records) next to their file, in `<name>.rejected` (0600), fsynced. */
export async function appendRejected(file: string, records: object[]): Promise<void> {
  if (records.length === 0) return;
  const target = `${file.slice(0, -SUFFIX.length)}${REJECTED_SUFFIX}`;
  const handle = await fsp.open(
    target,
    fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW,
    0o600,
  );
  try {
    await handle.appendFile(records.map((r) => `${JSON.stringify(r)}\n`).join(''), 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function syncDir(dir: string): Promise<void> {
  // Directories can be fsynced on Linux and macOS; elsewhere this is best effort.
  try {
    const handle = await fsp.open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    /* not supported here */
  }
}
