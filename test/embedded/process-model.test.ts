import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryError, identityToUserId, openMemory } from '../../memory/index.js';
import { tempDataDir } from '../support/backends.js';
import { cleanEnv, exited, runCliProcess, startTs } from '../support/processes.js';

const dirs: string[] = [];
function dataDir(): string {
  const dir = tempDataDir('process');
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

describe('embedded database across processes', () => {
  it('keeps data written by one process for another one after the first has exited', async () => {
    const dir = dataDir();
    const env = cleanEnv({ MEMORY_DATA_DIR: dir });
    const write = await runCliProcess(['store', 'alice@example.com', 'FACT', 'city', 'Lisbon'], env);
    expect(write.stderr).toBe('');
    expect(write.code).toBe(0);

    const read = await runCliProcess(['retrieve', 'alice@example.com', 'FACT', 'city'], env);
    expect(read).toMatchObject({ code: 0, stdout: 'Lisbon\n' });
    const other = await runCliProcess(['retrieve', 'bob@example.com', 'FACT', 'city'], env);
    expect(other).toMatchObject({ code: 1, stdout: '' });
  });

  it('serves other processes through the owner socket, and refuses a second owner', async () => {
    const dir = dataDir();
    const owner = await startTs<{ ready: boolean; pid: number }>(
      'test/support/embedded-owner.ts',
      [dir, 'alice@example.com', 'PREFERENCE', 'color', 'blue'],
      cleanEnv(),
    );
    try {
      expect(owner.first.ready).toBe(true);

      // A second owner, in this process and in another one, is refused with a clear error.
      let refused: unknown;
      try {
        await openMemory({ env: {}, dataDir: dir, embeddedRole: 'owner' });
      } catch (error) {
        refused = error;
      }
      expect(refused).toBeInstanceOf(MemoryError);
      expect((refused as MemoryError).code).toBe('DATA_DIR_LOCKED');
      expect((refused as MemoryError).message).toContain(`process ${owner.first.pid}`);
      const secondOwner = await startTs('test/support/embedded-owner.ts', [dir], cleanEnv()).catch(
        (error: Error) => error,
      );
      expect(secondOwner).toBeInstanceOf(Error);
      expect((secondOwner as Error).message).toContain('DATA_DIR_LOCKED');

      // Another process (the CLI) reads and writes through the owner's socket.
      const env = cleanEnv({ MEMORY_DATA_DIR: dir });
      expect(await runCliProcess(['retrieve', 'alice@example.com', 'PREFERENCE', 'color'], env)).toMatchObject({
        code: 0,
        stdout: 'blue\n',
      });
      expect((await runCliProcess(['store', 'bob@example.com', 'PREFERENCE', 'color', 'green'], env)).code).toBe(0);

      const client = await openMemory({ env: {}, dataDir: dir, embeddedRole: 'client' });
      try {
        expect(client.backend.kind).toBe('embedded-socket');
        const bob = client.forUser((await client.startSession('bob@example.com')).user);
        expect(bob.user.id).toBe(identityToUserId('bob@example.com'));
        expect(await bob.retrieve('PREFERENCE', 'color')).toBe('green');
      } finally {
        await client.close();
      }
    } finally {
      owner.child.kill('SIGTERM');
      expect(await exited(owner.child)).toBe(0);
    }
  });

  it('after the owner is killed (SIGKILL) a new owner takes over at once and every acknowledged write is there', async () => {
    const dir = dataDir();
    const writes = Array.from({ length: 20 }, (_, i) => [`user-${i % 4}@example.com`, 'FACT', `k${i}`, `v${i}`]).flat();
    const owner = await startTs('test/support/embedded-owner.ts', [dir, ...writes], cleanEnv());
    owner.child.kill('SIGKILL');
    await exited(owner.child);

    // The lock died with the process: no stale lock to wait out or delete by hand.
    const memory = await openMemory({ env: {}, dataDir: dir, embeddedRole: 'owner' });
    try {
      for (let i = 0; i < 20; i += 1) {
        expect(await memory.forIdentity(`user-${i % 4}@example.com`).retrieve('FACT', `k${i}`)).toBe(`v${i}`);
        expect(await memory.forIdentity(`user-${(i + 1) % 4}@example.com`).retrieve('FACT', `k${i}`)).toBeNull();
      }
    } finally {
      await memory.close();
    }
  });

  it('serves a data folder whose socket path would be too long for a Unix socket', async () => {
    const dir = path.join(dataDir(), 'a-rather-long-folder-name-'.repeat(4));
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 }); // a data folder must be private (DATA_DIR_UNSAFE otherwise)
    expect(path.join(dir, '.s.PGSQL.5432').length).toBeGreaterThan(100);
    const owner = await openMemory({ env: {}, dataDir: dir, embeddedRole: 'owner' });
    try {
      const client = await openMemory({ env: {}, dataDir: dir, embeddedRole: 'client' });
      try {
        const { user } = await client.startSession('long-path@example.com');
        await client.forUser(user).store('FACT', 'k', 'v');
        expect(await owner.forUser(user).retrieve('FACT', 'k')).toBe('v');
      } finally {
        await client.close();
      }
    } finally {
      await owner.close();
    }
  });

  it('a client with no owner fails with a typed error that says to call serveMemory() or set DATABASE_URL', async () => {
    const dir = dataDir();
    const error = await openMemory({ env: {}, dataDir: dir, embeddedRole: 'client', embeddedWaitMs: 300 }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(MemoryError);
    expect((error as MemoryError).code).toBe('BACKEND_UNAVAILABLE');
    expect((error as MemoryError).message).toContain('serveMemory()');
    expect((error as MemoryError).message).toContain('DATABASE_URL');
  });
});
