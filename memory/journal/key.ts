import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { MemoryError } from '../errors.js';
import { openPrivateFile, syncDir } from './files.js';

export const KEY_FILE = 'journal.key';
const KEY_BYTES = 32;

/**
 * The journal key of a data folder: 32 random bytes in `<journal folder>/journal.key` (0600) that
 * every process using the folder shares, and that keys the MAC of every journal line. Made on first
 * use: written in full to a temporary file opened with O_EXCL, then linked into place, which fails
 * if the key exists already: two processes starting at once end up with the same key, and none
 * can ever read a half-written one.
 */
export async function loadJournalKey(dir: string): Promise<Buffer> {
  const file = path.join(dir, KEY_FILE);
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const opened = await openPrivateFile(file, { secret: true });
    if (opened === 'missing') {
      await createKey(dir, file);
      continue;
    }
    if ('unsafe' in opened) throw new MemoryError('JOURNAL_UNSAFE', opened.unsafe);
    try {
      const key = await opened.handle.readFile();
      if (key.length !== KEY_BYTES) {
        throw new MemoryError(
          'JOURNAL_UNSAFE',
          `the journal key ${file} is ${key.length} bytes, not ${KEY_BYTES}: it was damaged or replaced, and the journal cannot be authenticated. ` +
            `Fix: move the journal folder aside (\`mv ${dir} ${dir}.damaged\`), then restart; writes waiting in it are not replayed`,
        );
      }
      return key;
    } finally {
      await opened.handle.close();
    }
  }
  throw new MemoryError(
    'JOURNAL_UNSAFE',
    `the journal key ${file} disappeared while it was being read: is another program cleaning ${dir}?`,
  );
}

async function createKey(dir: string, file: string): Promise<void> {
  const temp = path.join(dir, `${KEY_FILE}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await fsp.open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(randomBytes(KEY_BYTES));
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fsp.link(temp, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error; // another process made it first: use theirs
  } finally {
    await fsp.rm(temp, { force: true });
  }
  await syncDir(dir);
}
