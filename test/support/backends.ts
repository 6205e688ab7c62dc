import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { SecretCipher, openMemory, type MemoryStore } from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import { PostgrestStandin, prepareSupabaseLikeDatabase } from './postgrest-standin.js';
import { createTestDatabase } from './postgres.js';

/** A store on a real backend, plus raw SQL on the same database for assertions and fault set-up. */
export interface BackendUnderTest {
  name: string;
  memory: MemoryStore;
  sql<R extends object = Record<string, unknown>>(text: string, params?: unknown[]): Promise<R[]>;
  close(): Promise<void>;
}

export type BackendFactory = () => Promise<BackendUnderTest>;

export function tempDataDir(label = 'data'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `lkm-${label}-`));
}

function around(name: string, memory: MemoryStore, cleanup: () => Promise<void>): BackendUnderTest {
  return {
    name,
    memory,
    sql: (text, params = []) => transportOf(memory).query(text, params),
    close: async () => {
      await memory.close();
      await cleanup();
    },
  };
}

/** Every backend under test encrypts settings secrets with a fresh key. */
const cipher = () => new SecretCipher(randomBytes(32));

/** `env: {}` everywhere: a suite chooses its backend explicitly, whatever DATABASE_URL says. */
export const BACKENDS: Record<'postgres' | 'embedded' | 'embedded-socket' | 'supabase', BackendFactory> = {
  async postgres() {
    const db = await createTestDatabase('contract');
    const memory = await openMemory({
      env: {},
      databaseUrl: db.url,
      cipher: cipher(),
      dataDir: tempDataDir('pgjournal'),
    });
    return around('postgres', memory, db.drop);
  },
  async embedded() {
    const dataDir = tempDataDir('embedded');
    const memory = await openMemory({ env: {}, dataDir, embeddedRole: 'owner', serve: false, cipher: cipher() });
    return around('embedded', memory, async () => fs.rmSync(dataDir, { recursive: true, force: true }));
  },
  /**
   * supabase-js with the service role, through the PostgREST stand-in (test/support) to a real
   * PostgreSQL prepared like Supabase's (roles, auth schema) and migrated over SQL, as
   * `supabase db push` would. Raw SQL for assertions goes straight to the database.
   */
  async supabase() {
    const db = await createTestDatabase('supabase');
    await prepareSupabaseLikeDatabase(db.url);
    const admin = await openMemory({ env: {}, databaseUrl: db.url });
    const standin = new PostgrestStandin({ databaseUrl: db.url });
    await standin.start();
    const memory = await openMemory({
      env: {},
      supabase: { url: standin.url, serviceRoleKey: standin.serviceRoleKey, fetch: standin.fetch },
      cipher: cipher(),
    });
    return {
      name: 'supabase',
      memory,
      sql: (text, params = []) => transportOf(admin).query(text, params),
      close: async () => {
        await memory.close();
        await standin.stop();
        await admin.close();
        await db.drop();
      },
    };
  },
  /** What a LiveKit job process sees: a client of the owner's socket (here the owner is in this same process). */
  async 'embedded-socket'() {
    const dataDir = tempDataDir('socket');
    const owner = await openMemory({ env: {}, dataDir, embeddedRole: 'owner', serve: true });
    const memory = await openMemory({ env: {}, dataDir, embeddedRole: 'client', cipher: cipher() });
    return around('embedded-socket', memory, async () => {
      await owner.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    });
  },
};
