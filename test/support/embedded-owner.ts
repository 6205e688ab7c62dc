/**
 * Test helper process: owns an embedded data folder and serves it, as a worker's main process
 * does. Optionally writes memories first. Prints one JSON line when ready, then runs until it is
 * signalled (SIGTERM closes cleanly; the tests also SIGKILL it to simulate a crash).
 * Usage: embedded-owner.ts <dataDir> [identity category key value]...
 */
import { MemoryError, openMemory } from '../../memory/index.js';

const [dataDir, ...writes] = process.argv.slice(2);
try {
  const memory = await openMemory({ env: {}, dataDir: dataDir!, embeddedRole: 'owner', serve: true });
  for (let i = 0; i + 3 < writes.length; i += 4) {
    const [identity, category, key, value] = writes.slice(i, i + 4) as [string, string, string, string];
    const { user } = await memory.startSession(identity);
    await memory.forUser(user).store(category, key, value);
  }
  process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid })}\n`);
  process.on('SIGTERM', () => {
    void memory.close().then(() => process.exit(0));
  });
  setInterval(() => {}, 1 << 30);
} catch (error) {
  process.stderr.write(`${error instanceof MemoryError ? error.code : 'ERROR'}: ${(error as Error).message}\n`);
  process.exit(3);
}
