import path from 'node:path';
import {
  isMemoryError,
  loadMemoryConfig,
  openMemory,
  type MemoryStore,
  type OpenMemoryOptions,
} from '../memory/index.js';
import { agentsLogger, type MemoryLogger } from './logger.js';

/** serveMemory's options: openMemory's, and the background purge. */
export interface ServeMemoryOptions extends OpenMemoryOptions {
  /**
   * How often this process purges expired memories and old tombstones (default
   * MEMORY_PURGE_INTERVAL_MS, else hourly; 0: never). It runs here because the worker's main
   * process is one per host; the purge works in short batches, so several hosts purging the same
   * database at once only share the work.
   */
  purgeIntervalMs?: number;
  /** Where purge progress and failures go (default: agents-js's logger). Counts only. */
  logger?: MemoryLogger;
}

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
export async function serveMemory(options: ServeMemoryOptions = {}): Promise<MemoryServer> {
  if (isJobProcess()) return { store: undefined, servesEmbedded: false, close: () => Promise.resolve() };
  const { purgeIntervalMs, logger, ...open } = options;
  const intervalMs = purgeIntervalMs ?? loadMemoryConfig(options.env ?? process.env).lifecycle.purgeIntervalMs;
  if (!Number.isFinite(intervalMs) || intervalMs < 0) {
    throw new RangeError(`purgeIntervalMs must be a number of milliseconds >= 0, not ${String(intervalMs)}`);
  }
  const store = await openMemory({ ...open, embeddedRole: 'owner', serve: true });
  const log = logger ?? agentsLogger({ component: 'memory-purge' });
  store.startBackgroundPurge({
    intervalMs,
    onDone: (report) => {
      if (report.memories > 0 || report.tombstones > 0)
        log.info({ ...report }, 'memory purge removed expired memories and old tombstones');
    },
    onError: (error) =>
      log.warn(
        { code: isMemoryError(error) ? error.code : undefined },
        'memory purge failed; it is tried again at the next interval',
      ),
  });
  let closing: Promise<void> | undefined;
  return {
    store,
    servesEmbedded: store.backend.kind === 'embedded',
    close: () => (closing ??= store.close()),
  };
}
