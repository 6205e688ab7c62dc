/**
 * The memory core on its own: two callers, alice and bob, each get their own memory in the
 * embedded database (or DATABASE_URL), and neither can read the other's.
 * Run: npm run demo [-- --help]
 */
import { MemoryError, openMemory, type UserMemory } from '../memory/index.js';

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(`Usage: npm run demo

Shows per-user memory isolation: alice@example.com and bob@example.com each store facts,
then each reads back their own and tries to read the other's. Uses DATABASE_URL when set,
else the embedded database in MEMORY_DATA_DIR (default .data/), and prints what each user's
memory holds.
`);
  process.exit(0);
}

const say = (line: string) => process.stdout.write(`${line}\n`);

try {
  say(process.env.DATABASE_URL ? 'Opening PostgreSQL (DATABASE_URL)...' : `Opening the embedded database in ${process.env.MEMORY_DATA_DIR || '.data'}/ (the first run initialises it, a few seconds)...`);
  const memory = await openMemory();
  say(`Backend: ${memory.backend.location}\n`);

  const handles: UserMemory[] = [];
  for (const [identity, facts] of [
    ['alice@example.com', [['FACT', 'test1', "Alice's memory"], ['PREFERENCE', 'favorite_color', 'blue']]],
    ['bob@example.com', [['FACT', 'test2', "Bob's memory"], ['PREFERENCE', 'favorite_color', 'green']]],
  ] as const) {
    const session = await memory.startSession(identity);
    const handle = memory.forUser(session.user);
    handles.push(handle);
    say(`${identity} -> user ${session.user.id} (${session.firstSession ? 'first session' : `session #${session.user.sessionCount}`}, ${session.memories.length} memories loaded)`);
    for (const [category, key, value] of facts) await handle.store(category, key, value);
  }
  const [alice, bob] = handles as [UserMemory, UserMemory];
  say('');
  say(`alice reads FACT/test1: ${JSON.stringify(await alice.retrieve('FACT', 'test1'))}`);
  say(`alice reads FACT/test2: ${JSON.stringify(await alice.retrieve('FACT', 'test2'))}  (bob's key: not visible)`);
  say(`bob   reads FACT/test1: ${JSON.stringify(await bob.retrieve('FACT', 'test1'))}  (alice's key: not visible)`);
  say(`bob   reads PREFERENCE/favorite_color: ${JSON.stringify(await bob.retrieve('PREFERENCE', 'favorite_color'))}`);

  say('\nWhat each user\'s memory holds:');
  const rows: string[][] = [['identity', 'category', 'key', 'value']];
  for (const handle of handles) {
    for (const m of await handle.list()) rows.push([handle.user.identity, m.category, m.key, m.value]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  rows.forEach((row, i) => {
    say(row.map((cell, j) => cell.padEnd(widths[j]!)).join('  '));
    if (i === 0) say(widths.map((w) => '-'.repeat(w)).join('  '));
  });
  await memory.close();
} catch (error) {
  process.stderr.write(`demo: ${error instanceof MemoryError ? `${error.code}: ` : ''}${(error as Error).message}\n`);
  process.exit(error instanceof MemoryError && error.code === 'BACKEND_UNAVAILABLE' ? 3 : 1);
}
