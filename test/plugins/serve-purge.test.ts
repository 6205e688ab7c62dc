import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { openMemory, type PurgeReport } from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import { serveMemory, type MemoryServer } from '../../plugins/index.js';
import type { MemoryLogger } from '../../plugins/logger.js';
import { tempDataDir } from '../support/backends.js';

/** The worker's main process (serveMemory) purges expired memories in the background. */
describe('serveMemory: the background purge', () => {
  const dataDir = tempDataDir('servepurge');
  let served: MemoryServer | undefined;
  afterAll(async () => {
    await served?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('purges at start and then every interval, logging counts only; a bad interval is refused', async () => {
    const setup = await openMemory({ env: {}, dataDir, serve: false, journal: false });
    const handle = setup.forUser((await setup.startSession('purge-worker@example.com')).user);
    await handle.store('FACT', 'secret_plan', 'expired value', { expiresAt: new Date(Date.now() + 60_000) });
    await handle.store('FACT', 'kept', 'live value');
    await transportOf(setup).query(
      "update public.memories set expires_at = now() - interval '1 millisecond' where key = 'secret_plan'",
    );
    await setup.close();

    await expect(serveMemory({ env: {}, dataDir, purgeIntervalMs: -1 })).rejects.toThrow(/purgeIntervalMs/);

    const logged: Array<{ fields: Record<string, unknown>; message: string }> = [];
    let purged!: (fields: Record<string, unknown>) => void;
    const firstPurge = new Promise<Record<string, unknown>>((resolve) => (purged = resolve));
    const logger: MemoryLogger = {
      info: (fields, message) => {
        logged.push({ fields, message });
        if (message.startsWith('memory purge removed')) purged(fields);
      },
      warn: (fields, message) => logged.push({ fields, message }),
      error: (fields, message) => logged.push({ fields, message }),
    };
    served = await serveMemory({ env: {}, dataDir, purgeIntervalMs: 3_600_000, logger });
    const report = (await firstPurge) as unknown as PurgeReport;
    expect(report).toMatchObject({ memories: 1, tombstones: 0 });
    const keys = await transportOf(served.store!).query<{ key: string }>(
      'select key from public.memories order by key',
    );
    expect(keys).toEqual([{ key: 'kept' }]);
    expect(JSON.stringify(logged)).not.toMatch(/secret_plan|expired value/);
  });
});
