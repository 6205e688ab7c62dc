import '../support/quiet-rtc.js';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMemory } from '../../memory/index.js';
import { runCli } from '../../scripts/cli/program.js';
import { tempDataDir } from '../support/backends.js';
import { lastToolResult, lastUserText, rules, toolNames, toolResultFor, userSaid } from '../support/openai-standin.js';
import { PgWireProxy } from '../support/pg-wire-proxy.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { releaseLiveKitClients, startStack, type Stack } from '../support/stack.js';

const ALICE = 'alice-crash@example.com';

const script = rules(
  [
    {
      when: (req) => toolNames(req).includes('remember') && userSaid(/I like the colou?r (\w+)/i)(req),
      reply: (req) => ({
        toolCalls: [
          {
            name: 'remember',
            arguments: {
              category: 'PREFERENCE',
              key: 'favorite_color',
              value: /colou?r (\w+)/i.exec(lastUserText(req)!)![1]!,
            },
          },
        ],
      }),
    },
    { when: toolResultFor('remember'), reply: (req) => ({ text: String(lastToolResult(req)!.value) }) },
  ],
  { text: 'Hello!' },
);

/**
 * The real worker, killed with SIGKILL (main process and job process) after it acknowledged a
 * memory that could only go to the journal: after the restart, the journal replays it.
 */
describe('the worker killed between acknowledgement and replay', () => {
  let db: TestDatabase;
  let proxy: PgWireProxy;
  let stack: Stack;
  let dataDir: string;
  let proxyUrl: string;

  beforeAll(async () => {
    db = await createTestDatabase('crash');
    await (await openMemory({ env: {}, databaseUrl: db.url, journal: false })).close();
    ({ proxy, url: proxyUrl } = await PgWireProxy.inFrontOf(db.url));
    dataDir = tempDataDir('crash');
    stack = await startStack({ env: { DATABASE_URL: proxyUrl }, dataDir });
    stack.model.setResponder(script);
  }, 300_000);
  afterAll(async () => {
    await stack?.stop();
    await releaseLiveKitClients();
    await proxy?.stop();
    await db?.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('acknowledges "saved locally" while the database is down, and the memory is in the database after a restart', async () => {
    const alice = await stack.join(ALICE);
    await alice.waitForGreeting();
    proxy.stopDatabase();
    const reply = await alice.say('I like the colour teal');
    expect(reply).toMatch(/Saved PREFERENCE\/"favorite_color" = "teal".*locally/);

    // SIGKILL every process of the worker: the job process that journaled, and the main process.
    const journal = path.join(dataDir, 'journal');
    const files = fs.readdirSync(journal).filter((f) => f.endsWith('.jsonl'));
    expect(files).toHaveLength(1);
    const jobPid = Number(files[0]!.split('-')[1]);
    process.kill(jobPid, 'SIGKILL');
    stack.worker.kill('SIGKILL');
    await new Promise((resolve) => stack.worker.once('exit', resolve));
    for (let i = 0; i < 50; i += 1) {
      try {
        process.kill(jobPid, 0);
        await new Promise((r) => setTimeout(r, 100));
      } catch {
        break;
      }
    }

    // Restart (the CLI stands in for the worker's next start: same journal, same database).
    proxy.startDatabase();
    let stdout = '';
    const code = await runCli(['sync'], {
      stdout: (t) => (stdout += t),
      stderr: () => {},
      env: { DATABASE_URL: proxyUrl, MEMORY_DATA_DIR: dataDir },
    });
    expect(code).toBe(0);
    expect(stdout).toContain('moved to the database 1');
    const check = await openMemory({ env: {}, databaseUrl: db.url, journal: false, migrate: false });
    expect(await check.forIdentity(ALICE).retrieve('PREFERENCE', 'favorite_color')).toBe('teal');
    await check.close();
    expect(fs.readdirSync(journal).filter((f) => f.endsWith('.jsonl'))).toEqual([]);
  });
});
