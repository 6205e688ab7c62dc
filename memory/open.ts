import path from 'node:path';
import { loadMemoryConfig } from './config.js';
import { openEmbedded, type EmbeddedRole } from './embedded/open-embedded.js';
import { parseNamespace } from './identity.js';
import { checkLimit } from './labels.js';
import { MemoryStore } from './store.js';
import { createPostgresTransport } from './transports/postgres.js';
import type { SqlTransport } from './transports/transport.js';

export interface OpenMemoryOptions {
  /** PostgreSQL connection string. Default: DATABASE_URL. When neither is set, the embedded database is used. */
  databaseUrl?: string;
  /** Embedded data folder. Default: MEMORY_DATA_DIR, else `.data`. */
  dataDir?: string;
  /** UUIDv5 namespace for user ids. Default: MEMORY_UUID_NAMESPACE, else the DNS namespace. */
  namespace?: string;
  /** Largest value in UTF-8 bytes. Default: MEMORY_MAX_VALUE_BYTES, else 16 KiB. */
  maxValueBytes?: number;
  /** Embedded only: own the folder, connect to its owner, or pick (default `auto`); see EmbeddedRole. */
  embeddedRole?: EmbeddedRole;
  /** Embedded owner only: serve the folder to other processes (default true). */
  serve?: boolean;
  /** Embedded only: how long a client waits for the folder's owner to serve it (default 10 s). */
  embeddedWaitMs?: number;
  /** Apply pending migrations on open (default true; an embedded client leaves that to the owner). */
  migrate?: boolean;
  /** Connection pool size for PostgreSQL and embedded clients. */
  maxConnections?: number;
  /** Environment to read defaults from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

async function openTransport(options: OpenMemoryOptions, databaseUrl: string | undefined, dataDir: string): Promise<SqlTransport> {
  if (databaseUrl) {
    return createPostgresTransport({ connectionString: databaseUrl, maxConnections: options.maxConnections });
  }
  return openEmbedded({
    dataDir: path.resolve(dataDir),
    role: options.embeddedRole,
    serve: options.serve,
    waitMs: options.embeddedWaitMs,
    maxConnections: options.maxConnections,
  });
}

/**
 * Open the memory layer: PostgreSQL when a database URL is given (DATABASE_URL), otherwise the
 * embedded PGlite database in MEMORY_DATA_DIR, migrated on open.
 */
export async function openMemory(options: OpenMemoryOptions = {}): Promise<MemoryStore> {
  const config = loadMemoryConfig(options.env ?? process.env);
  const namespace = parseNamespace(options.namespace ?? config.namespace);
  const maxValueBytes = checkLimit(options.maxValueBytes ?? config.maxValueBytes, 'maxValueBytes', 1024 * 1024);
  const transport = await openTransport(options, options.databaseUrl ?? config.databaseUrl, options.dataDir ?? config.dataDir);
  const store = new MemoryStore(transport, { namespace, maxValueBytes });
  if ((options.migrate ?? true) && transport.kind !== 'embedded-socket') {
    try {
      await store.migrate();
    } catch (error) {
      await store.close();
      throw error;
    }
  }
  return store;
}
