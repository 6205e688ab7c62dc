import path from 'node:path';
import { openMemory, type MemoryStore, type OpenMemoryOptions } from '../memory/index.js';

/** What serveMemory started: the main process's store, open until close(). */
export interface MemoryServer {
  /**
   * The store the main process opened (and, for the embedded database, serves to job processes).
   * Undefined in a job process, where serveMemory does nothing.
   */
  readonly store: MemoryStore | undefined;
  /** True when this process serves the embedded database to the job processes. */
  readonly servesEmbedded: boolean;
  close(): Promise<void>;
}

/**
 * Whether this process is a job process that agents-js forked (it runs the agent file again, with
 * agents' job_proc_lazy_main as its entry), rather than the worker's main process.
 */
export function isJobProcess(argv: readonly string[] = process.argv): boolean {
  return /^job_proc_lazy_main\.[cm]?[jt]s$/.test(path.basename(argv[1] ?? ''));
}

/**
 * Call once in your worker's main process, before the worker starts (before `cli.runApp(...)`):
 * opens memory and applies pending migrations, and, for the embedded database (no DATABASE_URL
 * and no Supabase), owns its folder and serves it to the job processes, whose userMemory()
 * connects to it. In a job process it does nothing, so it may sit at the top level of the agent
 * file that every job process imports too.
 *
 * DATABASE_URL (PostgreSQL) is the recommendation for production: then this only migrates.
 */
export async function serveMemory(options: OpenMemoryOptions = {}): Promise<MemoryServer> {
  if (isJobProcess()) return { store: undefined, servesEmbedded: false, close: () => Promise.resolve() };
  const store = await openMemory({ ...options, embeddedRole: 'owner', serve: true });
  let closing: Promise<void> | undefined;
  return {
    store,
    servesEmbedded: store.backend.kind === 'embedded',
    close: () => (closing ??= store.close()),
  };
}
