import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WriteClock, identityToUserId, isMemoryError, openMemory, type MemoryStore } from '../../memory/index.js';
import { tryLockDataDir, tryLockFile } from '../../memory/embedded/lock.js';
import { KEY_FILE, journalDir, loadJournalKey, sealLine } from '../../memory/journal/index.js';
import { tempDataDir } from '../support/backends.js';
import { exited } from '../support/processes.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

/**
 * Files another OS user could have written are never trusted. "Another user" is uid/gid 65534
 * (nobody): these tests run as root, as CI does, and chown to it or spawn children as it.
 */
const NOBODY = 65534;

describe('the journal refuses folders and files that other users could write', () => {
  let db: TestDatabase;
  const dirs: string[] = [];
  beforeAll(async () => {
    expect(process.getuid!(), 'these tests simulate another OS user and must run as root').toBe(0);
    db = await createTestDatabase('perms');
    await (await openMemory({ env: {}, databaseUrl: db.url, journal: false })).close();
  });
  afterAll(async () => {
    await db?.drop();
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  });
  const dataDir = () => {
    const dir = tempDataDir('perms');
    dirs.push(dir);
    return dir;
  };
  const open = (dir: string) =>
    openMemory({ env: {}, databaseUrl: db.url, dataDir: dir, migrate: false, backgroundSync: false });
  const openError = (dir: string) =>
    open(dir).then(
      async (m) => (await m.close(), undefined),
      (e: unknown) => e,
    );

  it.each([
    ['0777', 0o777],
    ['0770', 0o770],
    ['0702 (writable by others only)', 0o702],
  ])('journal folder mode %s: open fails with JOURNAL_UNSAFE that says chmod 700', async (_label, mode) => {
    const dir = dataDir();
    fs.mkdirSync(journalDir(dir), { mode: 0o700 });
    fs.chmodSync(journalDir(dir), mode);
    const error = await openError(dir);
    expect(isMemoryError(error, 'JOURNAL_UNSAFE')).toBe(true);
    expect((error as Error).message).toContain(`chmod 700 ${journalDir(dir)}`);
  });

  it('journal folder owned by another user: open fails with JOURNAL_UNSAFE that says chown', async () => {
    const dir = dataDir();
    fs.mkdirSync(journalDir(dir), { mode: 0o700 });
    fs.chownSync(journalDir(dir), NOBODY, NOBODY);
    const error = await openError(dir);
    expect(isMemoryError(error, 'JOURNAL_UNSAFE')).toBe(true);
    expect((error as Error).message).toMatch(new RegExp(`belongs to uid ${NOBODY}.*chown -R \\S+ ${journalDir(dir)}`));
  });

  it('journal key readable by others, or damaged: open fails with JOURNAL_UNSAFE that says what to do', async () => {
    const dir = dataDir();
    await (await open(dir)).close();
    const key = path.join(journalDir(dir), KEY_FILE);
    expect(fs.statSync(key).mode & 0o777).toBe(0o600);
    expect(fs.statSync(journalDir(dir)).mode & 0o777).toBe(0o700);
    fs.chmodSync(key, 0o644);
    let error = await openError(dir);
    expect(isMemoryError(error, 'JOURNAL_UNSAFE')).toBe(true);
    expect((error as Error).message).toContain(`chmod 600 ${key}`);
    fs.chmodSync(key, 0o600);
    fs.writeFileSync(key, 'short');
    error = await openError(dir);
    expect(isMemoryError(error, 'JOURNAL_UNSAFE')).toBe(true);
    expect((error as Error).message).toContain('mv ');
  });

  /** A journal file with one VALID line (correct MAC), made unsafe by `spoil`. */
  async function unsafeFileCase(spoil: (file: string) => void, reason: RegExp): Promise<void> {
    const dir = dataDir();
    const memory: MemoryStore = await open(dir);
    try {
      const journal = memory.journal!;
      const identity = 'perm-victim@example.com';
      const line = sealLine(
        await loadJournalKey(journal.dir),
        JSON.stringify({
          v: 2,
          target: journal.prefix,
          at: new Date().toISOString(),
          pid: 999_999,
          op: 'store',
          userId: identityToUserId(identity),
          identity,
          category: 'FACT',
          key: 'planted',
          value: 'PLANTED',
          clock: new WriteClock('planter').next(),
        }),
      );
      const file = path.join(journal.dir, `${journal.prefix}-999999-${Date.now()}-0a0a0a.jsonl`);
      fs.writeFileSync(file, line, { mode: 0o600 });
      spoil(file);
      expect(await journal.pendingFor(identityToUserId(identity))).toEqual([]);
      expect((await journal.inspect()).problems).toEqual([
        expect.objectContaining({ file, kind: 'unsafe', reason: expect.stringMatching(reason) }),
      ]);
      const report = await memory.sync();
      expect(report).toMatchObject({ applied: 0, remaining: 0 });
      expect(report.problems).toEqual([
        expect.objectContaining({ file, line: 0, kind: 'unsafe', reason: expect.stringMatching(reason) }),
      ]);
      // Skipped: not read, not moved, not applied.
      expect(fs.existsSync(file)).toBe(true);
      expect(fs.existsSync(file.replace(/\.jsonl$/, '.rejected'))).toBe(false);
      expect(await memory.forIdentity(identity).retrieve('FACT', 'planted')).toBeNull();
    } finally {
      await memory.close();
    }
  }

  it('a journal file owned by another user is skipped and reported (chown), never read', async () => {
    await unsafeFileCase((file) => fs.chownSync(file, NOBODY, NOBODY), new RegExp(`belongs to uid ${NOBODY}.*chown`));
  });

  it('a journal file with mode 0666 is skipped and reported (chmod 600), never read', async () => {
    await unsafeFileCase((file) => fs.chmodSync(file, 0o666), /mode 666.*chmod 600/);
  });

  it('a journal file that is a symbolic link is skipped and reported, never followed', async () => {
    await unsafeFileCase((file) => {
      fs.renameSync(file, `${file}.target`);
      fs.symlinkSync(`${file}.target`, file);
    }, /symbolic link/);
  });

  it('an embedded data folder open to other users is refused with DATA_DIR_UNSAFE that says chmod 700', async () => {
    const dir = dataDir();
    fs.chmodSync(dir, 0o755);
    const error = await openMemory({ env: {}, dataDir: dir }).then(
      async (m) => (await m.close(), undefined),
      (e: unknown) => e,
    );
    expect(isMemoryError(error, 'DATA_DIR_UNSAFE')).toBe(true);
    expect((error as Error).message).toContain(`chmod 700 ${dir}`);
    fs.chmodSync(dir, 0o700);
    fs.chownSync(dir, NOBODY, NOBODY);
    const foreign = await tryLockDataDir(dir).catch((e: unknown) => e);
    expect(isMemoryError(foreign, 'DATA_DIR_UNSAFE')).toBe(true);
    expect((foreign as Error).message).toContain('chown -R');
  });
});

/**
 * What another local user would do against the embedded owner lock and a journal file lock: bind
 * the abstract socket names the locks used to be (anyone may), and create, bind or remove files
 * where the locks are now. Prints what worked, then stays alive holding whatever it got.
 */
const ATTACKER = `
const net = require('net'), fs = require('fs'), crypto = require('crypto');
const [dataDir, lockedFile] = process.argv.slice(1);
const abstract = (key) => '\\0livekit-user-memory:' + crypto.createHash('sha256').update(key).digest('hex').slice(0, 32);
const listen = (address) => new Promise((resolve) => { const s = net.createServer(); s.once('error', (e) => resolve(e.code)); s.listen(address, () => resolve('bound')); });
const tryFs = (fn) => { try { fn(); return 'done'; } catch (e) { return e.code; } };
(async () => {
  const out = {
    abstractDataDir: await listen(abstract(dataDir)),
    abstractFile: await listen(abstract(lockedFile)),
    ownerLockSocket: await listen(dataDir + '/owner.lock'),
    ownerLockFile: tryFs(() => fs.writeFileSync(dataDir + '/owner.lock', String(process.pid))),
    fileLockSocket: await listen(lockedFile + '.lock'),
  };
  process.stdout.write(JSON.stringify(out) + '\\n');
  setInterval(() => {}, 1 << 30);
})();
`;

function startAttacker(
  dataDir: string,
  lockedFile: string,
): Promise<{ child: ChildProcess; results: Record<string, string> }> {
  const child = spawn(process.execPath, ['-e', ATTACKER, dataDir, lockedFile], {
    uid: NOBODY,
    gid: NOBODY,
    stdio: ['ignore', 'pipe', 'inherit'],
    cwd: '/',
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the attacker exited with ${code}`)));
    child.stdout.once('data', (chunk: Buffer) =>
      resolve({ child, results: JSON.parse(chunk.toString()) as Record<string, string> }),
    );
  });
}

describe('another local user cannot take or block the locks', () => {
  it('the embedded owner lock and tryLockFile: an attacker running as nobody first gets nothing, and the owner opens', async () => {
    const dir = fs.realpathSync(tempDataDir('lockattack'));
    const lockedFile = path.join(dir, 'journal-file.jsonl');
    const attacker = await startAttacker(dir, lockedFile);
    try {
      // The abstract names are open to anyone: the old locks could be blocked this way.
      expect(attacker.results.abstractDataDir).toBe('bound');
      expect(attacker.results.abstractFile).toBe('bound');
      // Where the locks live now, the private data folder stops them.
      expect(attacker.results.ownerLockSocket).toBe('EACCES');
      expect(attacker.results.ownerLockFile).toBe('EACCES');
      expect(attacker.results.fileLockSocket).toBe('EACCES');

      const owner = await openMemory({ env: {}, dataDir: dir, embeddedRole: 'owner', serve: false });
      try {
        const { user } = await owner.startSession('lock-owner@example.com');
        await owner.forUser(user).store('FACT', 'k', 'v');
        // Held by us: a second owner is refused (the lock still excludes, for its owner's processes).
        expect(await tryLockDataDir(dir)).toBeUndefined();
      } finally {
        await owner.close();
      }
      const fileLock = await tryLockFile(lockedFile);
      expect(fileLock).toBeDefined();
      expect(await tryLockFile(lockedFile)).toBeUndefined();
      await fileLock!.release();
      expect(fs.existsSync(`${lockedFile}.lock`)).toBe(false);
    } finally {
      attacker.child.kill('SIGKILL');
      await exited(attacker.child).catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a lock whose holder was SIGKILLed is taken over at once (its socket file refuses connections)', async () => {
    const dir = fs.realpathSync(tempDataDir('lockstale'));
    try {
      const holder = spawn(
        process.execPath,
        [
          '-e',
          `require('net').createServer().listen(process.argv[1] + '/owner.lock', () => process.stdout.write('ok\\n'))`,
          dir,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      await new Promise((resolve) => holder.stdout.once('data', resolve));
      expect(await tryLockDataDir(dir)).toBeUndefined(); // alive: held
      holder.kill('SIGKILL');
      await exited(holder).catch(() => {});
      expect(fs.statSync(path.join(dir, 'owner.lock')).isSocket()).toBe(true); // the dead holder's leftover
      const lock = await tryLockDataDir(dir);
      expect(lock).toBeDefined();
      await lock!.release();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
