/**
 * Test helper process: a worker host whose wall clock is off by CLOCK_SKEW_MS (positive: ahead).
 * It reads one JSON command per line on stdin and answers one JSON line per command, so a test
 * can interleave the writes of several "hosts" against one real database.
 * Commands: {op:'store',category,key,value} {op:'forget',category,key} {op:'retrieve',category,key}
 *           {op:'sync'} {op:'exit'}
 * Usage: skewed-host.ts <databaseUrl> <dataDir> <identity>
 */
import readline from 'node:readline';
import { openMemory } from '../../memory/index.js';

const skew = Number(process.env.CLOCK_SKEW_MS ?? 0);
const realNow = Date.now.bind(Date);
Date.now = () => realNow() + skew;

const [databaseUrl, dataDir, identity] = process.argv.slice(2) as [string, string, string];
const memory = await openMemory({
  env: {},
  databaseUrl,
  dataDir,
  migrate: false,
  backgroundSync: false,
  timeoutMs: 500,
  maxConnections: 1,
});
const handle = memory.forUser((await memory.startSession(identity)).user);

type Command =
  | { op: 'store'; category: string; key: string; value: string }
  | { op: 'forget' | 'retrieve'; category: string; key: string }
  | { op: 'sync' | 'exit' };

async function run(command: Command): Promise<unknown> {
  switch (command.op) {
    case 'store':
      return handle.store(command.category, command.key, command.value);
    case 'forget':
      return { existed: await handle.forget(command.category, command.key) };
    case 'retrieve':
      return { value: await handle.retrieve(command.category, command.key) };
    case 'sync':
      return memory.sync();
    case 'exit':
      await memory.close();
      process.exit(0);
  }
}

process.stdout.write(`${JSON.stringify({ ready: true, now: Date.now() })}\n`);
for await (const line of readline.createInterface({ input: process.stdin })) {
  try {
    process.stdout.write(`${JSON.stringify({ ok: await run(JSON.parse(line) as Command) })}\n`);
  } catch (error) {
    process.stdout.write(
      `${JSON.stringify({ error: { code: (error as { code?: string }).code, message: (error as Error).message } })}\n`,
    );
  }
}
