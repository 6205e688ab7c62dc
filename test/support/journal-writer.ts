/**
 * Test helper process: a job process that writes while the database may be unreachable. Prints
 * one JSON line per acknowledged write ({ i, value, savedTo }), then {"done":true}, then waits to
 * be killed (the fault tests SIGKILL it between acknowledgement and replay).
 * Usage: journal-writer.ts <databaseUrl> <dataDir> <identity> <category> <key> <valuePrefix> <count>
 */
import { openMemory } from '../../memory/index.js';

const [databaseUrl, dataDir, identity, category, key, prefix, count] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
  string,
  string,
  string,
];
const memory = await openMemory({
  env: {},
  databaseUrl,
  dataDir,
  migrate: false,
  backgroundSync: false,
  timeoutMs: 1000,
  maxConnections: 1,
});
const handle = memory.forIdentity(identity);
for (let i = 0; i < Number(count); i += 1) {
  const value = `${prefix}-${i}`;
  const receipt = await handle.store(category, i === Number(count) - 1 ? key : `${key}-${i}`, value);
  process.stdout.write(`${JSON.stringify({ i, value, savedTo: receipt.savedTo })}\n`);
}
process.stdout.write(`${JSON.stringify({ done: true })}\n`);
setInterval(() => {}, 1 << 30);
