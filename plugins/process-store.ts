import { openMemory, type MemoryStore, type OpenMemoryOptions } from '../memory/index.js';
import { agentsLogger } from './logger.js';

/**
 * How a job process opens memory by default: a small PostgreSQL pool (DATABASE_URL), Supabase, or
 * a client of the embedded database that the worker's main process serves (serveMemory). Job
 * processes never migrate: the main process (serveMemory, or `lk-memory migrate`) does.
 */
export const JOB_PROCESS_MEMORY_OPTIONS: Readonly<OpenMemoryOptions> = {
  embeddedRole: 'client',
  migrate: false,
  maxConnections: 2,
  embeddedWaitMs: 3000,
  // A warm job process may wait minutes for its call: it keeps the connection prewarm opened.
  idleTimeoutMs: 0,
};

// One store per job process (agents-js's JobProcess), shared by the jobs that process runs.
const stores = new WeakMap<object, Promise<MemoryStore>>();

/**
 * This job process's memory store, opened on first use and shared by its jobs. A failed open is
 * forgotten, so the next job tries again instead of inheriting the failure.
 *
 * @param proc agents-js's JobProcess (`ctx.proc`, or prewarm's argument).
 */
export function processMemoryStore(proc: object, options: OpenMemoryOptions = {}): Promise<MemoryStore> {
  let store = stores.get(proc);
  if (!store) {
    store = openMemory({ ...JOB_PROCESS_MEMORY_OPTIONS, ...options });
    stores.set(proc, store);
    store.catch(() => {
      if (stores.get(proc) === store) stores.delete(proc);
    });
  }
  return store;
}

/**
 * Call from defineAgent's `prewarm`: opens the job process's store before its first job, so a
 * session does not pay for connecting. It never throws: a failure is logged, and the job's
 * userMemory() tries again and runs the session without memory if it still fails.
 */
export async function prewarmMemory(proc: object, options: OpenMemoryOptions = {}): Promise<void> {
  try {
    const store = await processMemoryStore(proc, options);
    // Connect now (one cheap round trip): the pool is lazy, and connecting (through a pooler, with
    // authentication) was about 150 to 200 ms of the first greeting. A database that is down here
    // is not an error: the session's own calls try again.
    await store.health();
  } catch (error) {
    agentsLogger().error(
      { error: (error as Error).message },
      'memory could not be opened in this job process: sessions run without it until it can',
    );
  }
}
