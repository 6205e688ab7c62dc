import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMemoryError, openMemory, type MemoryStore } from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import { tempDataDir } from '../support/backends.js';
import { PgWireProxy } from '../support/pg-wire-proxy.js';
import { startPgBouncer, type PgBouncer } from '../support/pgbouncer.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { cleanEnv, exited, startTs } from '../support/processes.js';
import { pick, seededRandom, testSeed } from '../support/random.js';

/**
 * Faults against a real PostgreSQL that the test controls through a TCP proxy: stopped (connections
 * cut and refused), slowed, connections dropped. Figures go to the output: writes attempted,
 * acknowledged, and found after recovery.
 */
describe('nothing acknowledged is lost', () => {
  let db: TestDatabase;
  let proxy: PgWireProxy;
  let proxyUrl: string;
  // PgBouncer in transaction pooling mode in front of the same proxy: the pooler stays up while
  // the database behind it stops, as with Supabase's pooled connection string.
  let bouncer: PgBouncer;
  let bouncerUrl: string;
  const dirs: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase('faults');
    await (await openMemory({ env: {}, databaseUrl: db.url, journal: false })).close(); // migrate
    ({ proxy, url: proxyUrl } = await PgWireProxy.inFrontOf(db.url));
    bouncer = await startPgBouncer({ upstream: { host: '127.0.0.1', port: proxy.port } });
    bouncerUrl = bouncer.urlFor(db.url);
  });
  afterAll(async () => {
    await bouncer?.stop();
    await proxy?.stop();
    await db?.drop();
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  const dataDir = () => {
    const dir = tempDataDir('faults');
    dirs.push(dir);
    return dir;
  };
  const open = (dir: string, extra: Parameters<typeof openMemory>[0] = {}) =>
    openMemory({
      env: {},
      databaseUrl: proxyUrl,
      dataDir: dir,
      migrate: false,
      timeoutMs: 400,
      backgroundSync: false,
      ...extra,
    });
  const direct = async () => openMemory({ env: {}, databaseUrl: db.url, journal: false, migrate: false });
  async function syncUntilEmpty(memory: MemoryStore): Promise<void> {
    for (let i = 0; i < 20; i += 1) {
      const report = await memory.sync();
      if (report.remaining === 0 && report.skippedFiles === 0) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('the journal did not drain');
  }

  it.each([
    ['directly', () => proxyUrl],
    ['through PgBouncer (transaction pooling)', () => bouncerUrl],
  ])(
    'database stopped in the middle of a session with writes going on (%s): every acknowledged write arrives, once, and isolation holds',
    async (route, routeUrl) => {
      proxy.startDatabase();
      const url = routeUrl();
      const memory = await open(dataDir(), { databaseUrl: url });
      const users = await Promise.all(
        ['alice', 'bob', 'carol'].map(async (n) =>
          memory.forUser(
            (await memory.startSession(`${n}-outage-${url === proxyUrl ? 'direct' : 'pooled'}@example.com`)).user,
          ),
        ),
      );
      const acked = new Map<string, { user: string; value: string }>(); // slot -> last acknowledged write
      let attempted = 0;
      let journaled = 0;
      for (let round = 0; round < 60; round += 1) {
        if (round === 20) proxy.stopDatabase();
        if (round === 45) proxy.startDatabase();
        await Promise.all(
          users.map(async (u, i) => {
            const key = `k${round % 7}`;
            const value = `${u.user.identity}#${round}`;
            attempted += 1;
            const receipt = await u.store('FACT', key, value);
            if (receipt.savedTo === 'journal') journaled += 1;
            acked.set(`${i}/${key}`, { user: u.user.id, value });
          }),
        );
      }
      // While pending, each user reads their own pending writes.
      const pendingBefore = (await memory.journal!.pending()).length;
      await syncUntilEmpty(memory);
      const check = await direct();
      let found = 0;
      for (const [slot, write] of acked) {
        const [i, key] = slot.split('/') as [string, string];
        const rows = await transportOf(check).query<{ user_id: string; value: string }>(
          "select user_id, value from public.memories where user_id = $1 and category = 'FACT' and key = $2",
          [users[Number(i)]!.user.id, key],
        );
        expect(rows).toHaveLength(1); // never duplicated
        expect(rows[0]!.value).toBe(write.value); // the last acknowledged write
        expect(rows[0]!.value.startsWith(users[Number(i)]!.user.identity)).toBe(true); // isolation
        found += 1;
      }
      console.log(
        `[outage ${route}] writes attempted ${attempted}, acknowledged ${attempted} (${journaled} to the journal, ${pendingBefore} pending at recovery), ` +
          `distinct keys acknowledged ${acked.size}, found after recovery ${found}`,
      );
      expect(journaled).toBeGreaterThan(0);
      expect(found).toBe(acked.size);
      await check.close();
      await memory.close();
    },
  );

  it('the worker killed with SIGKILL between acknowledgement and replay: a restart replays everything acknowledged, and a torn last line is reported, not hidden', async () => {
    proxy.stopDatabase();
    const dir = dataDir();
    const seed = await direct();
    await seed.provision('dora-kill@example.com');
    const writer = await startTs<{ i: number; value: string; savedTo: string }>(
      'test/support/journal-writer.ts',
      [proxyUrl, dir, 'dora-kill@example.com', 'FACT', 'last', 'dora', '25'],
      cleanEnv(),
    );
    const acks: Array<{ value: string; savedTo: string }> = [writer.first];
    await new Promise<void>((resolve) => {
      writer.child.stdout!.on('data', (chunk: Buffer) => {
        for (const line of chunk.toString().split('\n').filter(Boolean)) {
          const msg = JSON.parse(line) as { value?: string; savedTo?: string; done?: boolean };
          if (msg.done) resolve();
          else acks.push({ value: msg.value!, savedTo: msg.savedTo! });
        }
      });
    });
    writer.child.kill('SIGKILL');
    await exited(writer.child);
    expect(acks.every((a) => a.savedTo === 'journal')).toBe(true);

    // The crash cut the next write short: an unterminated line at the end of its journal file.
    const [file] = fs.readdirSync(path.join(dir, 'journal')).filter((f) => f.endsWith('.jsonl'));
    fs.appendFileSync(path.join(dir, 'journal', file!), '{"h":"0123","e":{"v":1,"op":"store","val');

    proxy.startDatabase();
    const restarted = await open(dir);
    const report = await restarted.sync();
    expect(report.problems).toEqual([expect.objectContaining({ kind: 'torn' })]);
    expect(report.applied).toBe(acks.length);
    expect(report.remaining).toBe(0);
    expect(fs.readFileSync(path.join(dir, 'journal', file!.replace('.jsonl', '.rejected')), 'utf8')).toContain('torn');
    const dora = seed.forIdentity('dora-kill@example.com');
    let found = 0;
    for (const [i, ack] of acks.entries()) {
      if ((await dora.retrieve('FACT', i === acks.length - 1 ? 'last' : `last-${i}`)) === ack.value) found += 1;
    }
    console.log(
      `[sigkill] writes acknowledged before SIGKILL ${acks.length}, replayed after restart ${report.applied}, found ${found}, torn lines reported ${report.problems.length}`,
    );
    expect(found).toBe(acks.length);
    await restarted.close();
    await seed.close();
  });

  it('two writers (two job processes) to one key during an outage: the later write wins after replay, whichever arrives first', async () => {
    proxy.stopDatabase();
    const dir = dataDir();
    const seed = await direct();
    await seed.provision('erin-race@example.com');
    const run = async (prefix: string) => {
      const writer = await startTs<{ value: string }>(
        'test/support/journal-writer.ts',
        [proxyUrl, dir, 'erin-race@example.com', 'PREFERENCE', 'color', prefix, '1'],
        cleanEnv(),
      );
      writer.child.kill('SIGKILL');
      await exited(writer.child);
      return writer.first.value;
    };
    const older = await run('older');
    await new Promise((r) => setTimeout(r, 5)); // the second write is made later
    const newer = await run('newer');
    const journal = path.join(dir, 'journal');
    const files = fs
      .readdirSync(journal)
      .filter((f) => f.endsWith('.jsonl'))
      .sort((a, b) => fs.statSync(path.join(journal, a)).mtimeMs - fs.statSync(path.join(journal, b)).mtimeMs);
    expect(files).toHaveLength(2);
    // Make the NEWER write reach the database first: hide the older writer's file for one sync.
    fs.renameSync(path.join(journal, files[0]!), path.join(dir, 'held-back'));
    proxy.startDatabase();
    const replayer = await open(dir);
    expect((await replayer.sync()).applied).toBe(1);
    expect(await seed.forIdentity('erin-race@example.com').retrieve('PREFERENCE', 'color')).toBe(newer);
    fs.renameSync(path.join(dir, 'held-back'), path.join(journal, files[0]!));
    const late = await replayer.sync();
    expect(late).toMatchObject({ applied: 0, older: 1, remaining: 0 });
    expect(await seed.forIdentity('erin-race@example.com').retrieve('PREFERENCE', 'color')).toBe(newer);
    expect(older).not.toBe(newer);
    await replayer.close();
    await seed.close();
  });

  it('randomised fault schedule (stop, start, slow, drop) over 2,000 operations by 12 users: zero acknowledged writes lost, zero cross-user reads', async () => {
    const seed = testSeed();
    const random = seededRandom(seed);
    proxy.startDatabase();
    proxy.setDelay(0);
    const memory = await open(dataDir(), { timeoutMs: 250 });
    const identities = Array.from({ length: 12 }, (_, i) => `chaos-${seed}-${i}@example.com`);
    // The users are provisioned over a direct connection first: under CI load, opening twelve
    // connections within the chaos run's 250 ms timeout is not what this test is about.
    const provisioner = await direct();
    const users = await Promise.all(identities.map((id) => provisioner.provision(id)));
    await provisioner.close();
    const handles = users.map((user) => memory.forUser(user));
    const model = new Map<string, string | null>(); // "user|key" -> last acknowledged value (null: forgotten)
    const stats = { ops: 0, writes: 0, acked: 0, journaled: 0, reads: 0, unavailableReads: 0, crossUser: 0, faults: 0 };
    // A slow spell lasts 15 steps: each of its calls waits out the 250 ms timeout, and the run
    // must stay bounded in time.
    let slowUntil = -1;
    try {
      for (let step = 0; step < 2000; step += 1) {
        if (step === slowUntil) proxy.setDelay(0);
        const roll = random();
        if (roll < 0.03) {
          stats.faults += 1;
          const fault = pick(random, ['stop', 'start', 'slow', 'fast', 'drop'] as const);
          if (fault === 'stop') proxy.stopDatabase();
          if (fault === 'start') proxy.startDatabase();
          if (fault === 'slow') {
            proxy.setDelay(400);
            slowUntil = step + 15;
          }
          if (fault === 'fast') proxy.setDelay(0);
          if (fault === 'drop') proxy.dropAll();
          continue;
        }
        stats.ops += 1;
        const u = Math.floor(random() * handles.length);
        const handle = handles[u]!;
        const key = `k${Math.floor(random() * 6)}`;
        const slot = `${u}|${key}`;
        if (roll < 0.55) {
          const value = `${identities[u]}|${step}`;
          stats.writes += 1;
          const receipt = await handle.store('FACT', key, value);
          stats.acked += 1;
          if (receipt.savedTo === 'journal') stats.journaled += 1;
          model.set(slot, value);
        } else if (roll < 0.65) {
          stats.writes += 1;
          await handle.forget('FACT', key);
          stats.acked += 1;
          model.set(slot, null);
        } else {
          stats.reads += 1;
          try {
            const value = await handle.retrieve('FACT', key);
            if (value !== null && !value.startsWith(`${identities[u]}|`)) stats.crossUser += 1;
            if (model.has(slot)) expect(value, `step ${step}`).toBe(model.get(slot));
          } catch (error) {
            if (!isMemoryError(error, 'BACKEND_UNAVAILABLE') && !isMemoryError(error, 'TIMEOUT')) throw error;
            stats.unavailableReads += 1;
          }
        }
      }
      proxy.setDelay(0);
      proxy.startDatabase();
      await syncUntilEmpty(memory);
      const check = await direct();
      let lost = 0;
      for (const [slot, value] of model) {
        const [u, key] = slot.split('|') as [string, string];
        if ((await check.forIdentity(identities[Number(u)]!).retrieve('FACT', key)) !== value) lost += 1;
      }
      await check.close();
      console.log(
        `[chaos seed ${seed}] operations ${stats.ops} (faults injected ${stats.faults}): writes attempted ${stats.writes}, acknowledged ${stats.acked} ` +
          `(${stats.journaled} via the journal), reads ${stats.reads} (${stats.unavailableReads} unavailable), ` +
          `keys checked after recovery ${model.size}, lost ${lost}, cross-user reads ${stats.crossUser}`,
      );
      expect(stats.ops + stats.faults).toBe(2000);
      expect(lost).toBe(0);
      expect(stats.crossUser).toBe(0);
      expect(stats.journaled).toBeGreaterThan(0);
    } catch (error) {
      throw new Error(
        `chaos run failed with seed ${seed} (replay: MEMORY_TEST_SEED=${seed} npm test): ${(error as Error).message}`,
        { cause: error },
      );
    } finally {
      proxy.setDelay(0);
      proxy.startDatabase();
      await memory.close();
    }
  }, 300_000);
});

describe('lk-memory sync and inspect show the journal', () => {
  it('a store while the database is down is saved locally, shown by inspect, and moved by sync', async () => {
    const { runCli } = await import('../../scripts/cli/program.js');
    const db = await createTestDatabase('clisync');
    const { proxy, url } = await PgWireProxy.inFrontOf(db.url);
    const dir = tempDataDir('clisync');
    const env = { DATABASE_URL: url, MEMORY_DATA_DIR: dir };
    const cli = async (args: string[]) => {
      let stdout = '';
      let stderr = '';
      const code = await runCli(args, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), env });
      return { code, stdout, stderr };
    };
    try {
      expect((await cli(['migrate'])).code).toBe(0);
      proxy.stopDatabase();
      const stored = await cli(['store', 'frank@example.com', 'FACT', 'city', 'Braga']);
      expect(stored.code).toBe(0);
      expect(stored.stdout).toContain('locally');
      proxy.startDatabase();
      const before = JSON.parse((await cli(['inspect', 'frank@example.com', '--json'])).stdout);
      expect(before.locations.pendingOutsideDatabase).toMatchObject([
        { op: 'store', category: 'FACT', key: 'city', value: 'Braga' },
      ]);
      expect(before.memories).toMatchObject([{ key: 'city', value: 'Braga' }]); // reads merge the journal
      expect((await cli(['inspect', 'frank@example.com'])).stdout).toContain('1 write(s) waiting for the database');
      const sync = await cli(['sync']);
      expect(sync.code).toBe(0);
      expect(sync.stdout).toContain('moved to the database 1');
      const after = JSON.parse((await cli(['inspect', 'frank@example.com', '--json'])).stdout);
      expect(after.locations.pendingOutsideDatabase).toEqual([]);
      expect(after.profile.identity).toBe('frank@example.com');
      expect((await cli(['retrieve', 'frank@example.com', 'FACT', 'city'])).stdout).toBe('Braga\n');
    } finally {
      await proxy.stop();
      await db.drop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('settings saved while the database is down', () => {
  it('are journaled encrypted, read back merged, and reach the database on replay', async () => {
    const { SecretCipher } = await import('../../memory/index.js');
    const { randomBytes } = await import('node:crypto');
    const db = await createTestDatabase('setjournal');
    const { proxy, url } = await PgWireProxy.inFrontOf(db.url);
    const dir = tempDataDir('setjournal');
    const cipher = new SecretCipher(randomBytes(32));
    const memory = await openMemory({
      env: {},
      databaseUrl: url,
      dataDir: dir,
      cipher,
      backgroundSync: false,
      timeoutMs: 400,
    });
    try {
      const alice = memory.forUser((await memory.startSession('alice-settings@example.com')).user);
      await alice.saveSettings({ config: { voice: 'alloy' }, secrets: { OLD: 'old-secret' } });
      proxy.stopDatabase();
      const saved = await alice.saveSettings({
        config: { voice: 'verse' },
        secrets: { API_KEY: 'offline-plaintext' },
        removeSecrets: ['OLD'],
      });
      expect(saved.savedTo).toBe('journal');
      const journalText = fs
        .readdirSync(path.join(dir, 'journal'))
        .map((f) => fs.readFileSync(path.join(dir, 'journal', f), 'utf8'))
        .join('');
      expect(journalText).toContain('"op":"settings"');
      expect(journalText).not.toContain('offline-plaintext'); // encrypted in the journal too
      proxy.startDatabase();
      const merged = (await alice.getSettings())!;
      expect(merged).toMatchObject({ config: { voice: 'verse' }, secretNames: ['API_KEY'], savedTo: 'journal' });
      expect(await alice.revealSecrets(merged)).toEqual({ API_KEY: 'offline-plaintext' });
      expect((await memory.sync()).applied).toBe(1);
      const stored = (await alice.getSettings())!;
      expect(stored.savedTo).toBeUndefined();
      expect(stored).toMatchObject({ config: { voice: 'verse' }, secretNames: ['API_KEY'] });
    } finally {
      await memory.close();
      await proxy.stop();
      await db.drop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
