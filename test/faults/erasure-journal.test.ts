import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMemory, type MemoryStore } from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import { tempDataDir } from '../support/backends.js';
import { PgWireProxy } from '../support/pg-wire-proxy.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { cleanEnv, exited, startTs } from '../support/processes.js';
import { tableContents } from '../support/table-contents.js';

/**
 * Erasure while writes of the user wait in journals, with a real outage: a real PostgreSQL behind a
 * TCP proxy the test stops (connections cut and refused) and starts again.
 */
describe('erasure and the offline journal', () => {
  let db: TestDatabase;
  let proxy: PgWireProxy;
  let proxyUrl: string;
  const dirs: string[] = [];
  const stores: MemoryStore[] = [];

  beforeAll(async () => {
    db = await createTestDatabase('erasejournal');
    await (await openMemory({ env: {}, databaseUrl: db.url, journal: false })).close(); // migrate
    ({ proxy, url: proxyUrl } = await PgWireProxy.inFrontOf(db.url));
  });
  afterAll(async () => {
    for (const store of stores) await store.close();
    await proxy?.stop();
    await db?.drop();
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  const dataDir = () => {
    const dir = tempDataDir('erasejournal');
    dirs.push(dir);
    return dir;
  };
  const track = (store: MemoryStore) => {
    stores.push(store);
    return store;
  };
  /** A worker host: its own data folder (its own journal), reaching the database through the proxy. */
  const host = async (dir: string) =>
    track(
      await openMemory({
        env: {},
        databaseUrl: proxyUrl,
        dataDir: dir,
        migrate: false,
        timeoutMs: 400,
        backgroundSync: false,
      }),
    );
  const direct = async () => track(await openMemory({ env: {}, databaseUrl: db.url, journal: false, migrate: false }));

  /** Every row of the database, and every file of a data folder, that names the user. */
  async function traces(admin: MemoryStore, identity: string, folders: string[] = []): Promise<string[]> {
    const id = admin.userIdFor(identity);
    const rows = Object.entries(await tableContents({ sql: (t, p) => transportOf(admin).query(t, p) })).flatMap(
      ([table, list]) => list.filter((r) => r.includes(id) || r.includes(identity)).map((r) => `${table}: ${r}`),
    );
    const files = folders.flatMap((folder) =>
      fs
        .readdirSync(folder, { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => path.join(e.parentPath, e.name))
        .filter((f) => {
          const text = fs.readFileSync(f, 'latin1');
          return text.includes(id) || text.includes(identity);
        }),
    );
    return [...rows, ...files];
  }

  it("another host's pending writes of an erased user: replay drops and reports them, brings nothing back, and applies everyone else's", async () => {
    proxy.startDatabase();
    const dirB = dataDir();
    const hostB = await host(dirB);
    const alice = 'alice-erased-elsewhere@example.com';
    const bob = 'bob-kept@example.com';
    const aliceB = hostB.forUser((await hostB.startSession(alice)).user);
    const bobB = hostB.forUser((await hostB.startSession(bob)).user);
    await aliceB.store('FACT', 'online', 'written before the outage');

    proxy.stopDatabase();
    expect((await aliceB.store('FACT', 'offline', 'alice wrote this offline')).savedTo).toBe('journal');
    expect((await aliceB.saveSettings({ config: { voice: 'alloy' } })).savedTo).toBe('journal');
    expect((await bobB.store('FACT', 'offline', 'bob wrote this offline')).savedTo).toBe('journal');
    expect(await hostB.journal!.pendingFor(hostB.userIdFor(alice))).toHaveLength(2);

    // The database is back; an operator on another host erases alice before host B replays.
    proxy.startDatabase();
    const admin = await direct();
    const erased = await admin.eraseUser(alice);
    expect(erased).toMatchObject({ journal: null, database: { user: true, memories: 1 } });

    const report = await hostB.sync();
    expect(report).toMatchObject({ applied: 1, erased: 2, remaining: 0, problems: [] });
    expect(report.dropped).toEqual([
      expect.objectContaining({
        kind: 'erased',
        op: 'store',
        reason: expect.stringMatching(/was erased after this store/),
      }),
      expect.objectContaining({ kind: 'erased', op: 'settings', reason: expect.stringMatching(/was erased/) }),
    ]);
    expect(await hostB.journal!.pending()).toEqual([]);
    // Nothing of alice anywhere: not re-provisioned, no memory, no settings, nothing in B's journal
    // folder (dropped entries are not set aside); only the content-free erasure record.
    expect(await traces(admin, alice, [dirB])).toEqual([]);
    expect(await admin.forIdentity(bob).retrieve('FACT', 'offline')).toBe('bob wrote this offline');
    const records = await transportOf(admin).query<{ user_id: string | null; action: string }>(
      "select user_id, action from public.memory_audit_log where action = 'erase'",
    );
    expect(records).toEqual([{ user_id: null, action: 'erase' }]);

    // Alice calls again after the erasure: a new user, and her new offline writes do apply.
    const again = hostB.forUser((await hostB.startSession(alice)).user);
    proxy.stopDatabase();
    expect((await again.store('FACT', 'after', 'said after the erasure')).savedTo).toBe('journal');
    proxy.startDatabase();
    expect(await hostB.sync()).toMatchObject({ applied: 1, erased: 0 });
    expect(await admin.forIdentity(alice).retrieve('FACT', 'after')).toBe('said after the erasure');
    expect(await admin.forIdentity(alice).retrieve('FACT', 'offline')).toBeNull();
  });

  it("this host: erase removes the user's entries from a dead process's journal file and its own, keeps everyone else's, and replay brings nothing back", async () => {
    const dir = dataDir();
    const alice = 'alice-erased-here@example.com';
    const bob = 'bob-here@example.com';
    proxy.stopDatabase();
    // A job process wrote for alice during the outage and was killed (SIGKILL) before any replay.
    const writer = await startTs<{ savedTo: string }>(
      'test/support/journal-writer.ts',
      [proxyUrl, dir, alice, 'FACT', 'dead', 'alice-dead-process', '3'],
      cleanEnv(),
    );
    await new Promise<void>((resolve) => {
      writer.child.stdout!.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('"done"')) resolve();
      });
    });
    writer.child.kill('SIGKILL');
    await exited(writer.child);
    const here = await host(dir);
    const aliceId = here.userIdFor(alice);
    // The crash also cut a write of alice's short: a torn last line naming her.
    const [deadFile] = fs.readdirSync(path.join(dir, 'journal')).filter((f) => f.endsWith('.jsonl'));
    fs.appendFileSync(path.join(dir, 'journal', deadFile!), `0000 {"v":2,"op":"store","userId":"${aliceId}","val`);
    expect((await here.forIdentity(alice).store('FACT', 'mine', 'alice via this process')).savedTo).toBe('journal');
    expect((await here.forIdentity(bob).store('FACT', 'mine', 'bob via this process')).savedTo).toBe('journal');
    expect(await here.pendingFor(alice)).toHaveLength(4);

    proxy.startDatabase();
    // Alice never reached the database: the erasure is recorded anyway, for other hosts' journals.
    const report = await here.eraseUser(alice);
    expect(report).toMatchObject({
      database: { user: false, memories: 0 },
      journal: { removed: 4, skippedFiles: 0 },
    });
    expect(await here.pendingFor(alice)).toEqual([]);
    expect(await here.pendingFor(bob)).toHaveLength(1);

    const replay = await here.sync();
    expect(replay).toMatchObject({ applied: 1, erased: 0, remaining: 0, problems: [] });
    const admin = await direct();
    expect(await traces(admin, alice, [dir])).toEqual([]);
    expect(await admin.forIdentity(bob).retrieve('FACT', 'mine')).toBe('bob via this process');
    // An identity with nothing anywhere: a typed error, and nothing recorded.
    const before = await transportOf(admin).query('select count(*)::int as n from public.memory_audit_log');
    await expect(here.eraseUser('nobody-here@example.com')).rejects.toMatchObject({ code: 'USER_NOT_FOUND' });
    expect(await transportOf(admin).query('select count(*)::int as n from public.memory_audit_log')).toEqual(before);
  });

  it('erasure needs the database: while it is down, nothing is erased and the error says so', async () => {
    const dir = dataDir();
    proxy.startDatabase();
    const here = await host(dir);
    const carol = 'carol-outage@example.com';
    await here.forUser((await here.startSession(carol)).user).store('FACT', 'k', 'v');
    proxy.stopDatabase();
    expect((await here.forIdentity(carol).store('FACT', 'pending', 'p')).savedTo).toBe('journal');
    await expect(here.eraseUser(carol)).rejects.toMatchObject({
      code: expect.stringMatching(/^(BACKEND_UNAVAILABLE|TIMEOUT)$/),
      message: expect.stringMatching(/nothing was erased/),
    });
    expect(await here.pendingFor(carol)).toHaveLength(1);
    proxy.startDatabase();
    const admin = await direct();
    expect(await admin.forIdentity(carol).retrieve('FACT', 'k')).toBe('v');
  });
});
