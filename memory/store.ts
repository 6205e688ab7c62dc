import { MemoryError, isMemoryError } from './errors.js';
import { identityToUserId } from './identity.js';
import { checkLimit } from './labels.js';
import { migrate, type MigrationResult } from './migrations/index.js';
import { secretContext, type EncryptedSecret, type SecretCipher } from './settings/cipher.js';
import { DEFAULT_TENANT, checkTenant } from './settings/schema.js';
import { toSettings, type SettingsJson, type StoredSettings } from './settings/settings.js';
import { readDiagnostics, type Diagnostics } from './diagnostics.js';
import { validate as isUuid } from 'uuid';
import { jsonArg, type CallArgs } from './transports/call.js';
import type { SqlTransport, TransportKind } from './transports/transport.js';
import type { SessionStart, StartSessionOptions, User, UserRef } from './types.js';
import { Unreachable, type ApplyOutcome, type Journal, type JournalOp, type ReplayReport } from './journal/journal.js';
import { UserMemory, isUnreachable, mergePending, toMemory, type MemoryRow, type StoreState } from './user-memory.js';

export const DEFAULT_MEMORY_LIMIT = 20;
export const MAX_MEMORY_LIMIT = 1000;

interface UserJson {
  id: string;
  identity: string;
  created_at: string;
  last_seen_at: string;
  session_count: number;
}

interface SessionJson {
  user: UserJson;
  first_session: boolean;
  memories: MemoryRow[];
  settings: SettingsJson | null;
}

interface ProfileJson {
  user: (UserJson & { auth_user_id: string | null }) | null;
  memory_count: number | string;
  settings: SettingsJson[] | null;
  audit: Array<{ at: string; action: string; component: string; tenant_id: string | null; detail: Record<string, unknown> }> | null;
}

export interface Profile {
  userId: string;
  identity: string;
  /** Null when the identity was never provisioned. */
  user: (User & { authUserId: string | null }) | null;
  memoryCount: number;
  settings: StoredSettings[];
  /** The latest audit entries about this user, newest first. */
  audit: Array<{ at: Date; action: string; component: string; tenant: string | null; detail: Record<string, unknown> }>;
}

export interface RotationReport {
  /** Rows whose secrets now use the current key. */
  rotated: number;
  /** Rows that could not be decrypted with any known key (left as they were). */
  failed: Array<{ userId: string; tenant: string; reason: string }>;
  keyId: string;
}

function toUser(json: UserJson): User {
  return {
    id: json.id,
    identity: json.identity,
    createdAt: new Date(json.created_at),
    lastSeenAt: new Date(json.last_seen_at),
    sessionCount: Number(json.session_count),
  };
}

export interface BackendInfo {
  kind: TransportKind;
  location: string;
}

const transports = new WeakMap<MemoryStore, SqlTransport>();

/**
 * Internal (not exported by the package): the raw transport behind a store, for this project's own
 * tests and diagnostics. Application code reaches data only through UserMemory.
 */
export function transportOf(store: MemoryStore): SqlTransport {
  return transports.get(store)!;
}

/** The memory layer for a whole worker: provisions users and hands out per-user handles. */
export class MemoryStore {
  readonly namespace: string;
  readonly #state: StoreState;

  constructor(
    transport: SqlTransport,
    options: { namespace: string; maxValueBytes: number; cipher?: SecretCipher; tenant?: string; component?: string; journal?: Journal },
  ) {
    this.namespace = options.namespace;
    this.#state = {
      transport,
      maxValueBytes: options.maxValueBytes,
      cipher: options.cipher,
      tenant: options.tenant ?? DEFAULT_TENANT,
      component: options.component ?? 'library',
      journal: options.journal,
      recent: new Map(),
      closed: false,
    };
    transports.set(this, transport);
  }

  get backend(): BackendInfo {
    return { kind: this.#state.transport.kind, location: this.#state.transport.location };
  }

  /** Statements sent to the database so far (tests use it to prove one round trip per operation). */
  get statementCount(): number {
    return this.#state.transport.statementCount;
  }

  /** The deterministic user id for an identity under this store's namespace. */
  userIdFor(identity: string): string {
    return identityToUserId(identity, this.namespace);
  }

  /**
   * One database round trip: provision the user if new, count the session, and return the profile
   * with the most recently updated memories. Fails with a typed error, never with a stand-in user.
   */
  async startSession(identity: string, options: StartSessionOptions = {}): Promise<SessionStart> {
    const userId = this.userIdFor(identity);
    const limit = checkLimit(options.memoryLimit ?? DEFAULT_MEMORY_LIMIT, 'memoryLimit', MAX_MEMORY_LIMIT);
    const tenant = checkTenant(options.tenant ?? this.#state.tenant);
    const session = await this.#provisioning<SessionJson>(identity, userId, 'memory_start_session', {
      p_user_id: userId,
      p_identity: identity,
      p_memory_limit: limit,
      p_tenant_id: tenant,
    });
    this.#checkOwnUser(session?.user, identity, userId);
    // The user's own writes still waiting in the journal are part of what they see.
    const pending = this.#state.journal ? await this.#state.journal.pendingFor(userId) : [];
    return {
      user: toUser(session!.user),
      firstSession: session!.first_session,
      memories: mergePending(session!.memories, pending).slice(0, limit).map(toMemory),
      settings: toSettings(session!.settings),
    };
  }

  /** Provision a user without starting a session (for administrative writes). One round trip. */
  async provision(identity: string): Promise<User> {
    const userId = this.userIdFor(identity);
    const user = await this.#provisioning<UserJson>(identity, userId, 'memory_provision', { p_user_id: userId, p_identity: identity });
    this.#checkOwnUser(user, identity, userId);
    return toUser(user!);
  }

  async #provisioning<T>(identity: string, userId: string, fn: string, args: CallArgs): Promise<T | undefined> {
    if (this.#state.closed) throw new MemoryError('CLOSED', 'the memory store was closed; open a new one with openMemory()');
    try {
      return ((await this.#state.transport.call(fn, args, 'value')) ?? undefined) as T | undefined;
    } catch (error) {
      if (isMemoryError(error, 'BACKEND_UNAVAILABLE')) throw error;
      const reason = isMemoryError(error) ? error.code : 'DATABASE_ERROR';
      throw new MemoryError('PROVISIONING_FAILED', `could not provision ${JSON.stringify(identity)} as ${userId}: ${(error as Error).message}`, {
        cause: error,
        reason,
      });
    }
  }

  /** Belt and braces: whatever the database returned, a caller is only ever handed its own user. */
  #checkOwnUser(user: UserJson | undefined, identity: string, userId: string): void {
    if (!user || user.id !== userId || user.identity !== identity) {
      throw new MemoryError('PROVISIONING_FAILED', `could not provision ${JSON.stringify(identity)}: the database returned no matching user`);
    }
  }

  /**
   * A handle for an identity without touching the database (reads work for any identity; writes
   * need the user provisioned first, by startSession or provision).
   */
  forIdentity(identity: string): UserMemory {
    return new UserMemory(this.#state, { id: this.userIdFor(identity), identity });
  }

  /** A handle bound to one user; the user must be one whose id matches its identity. */
  forUser(user: UserRef): UserMemory {
    let expected: string;
    try {
      expected = this.userIdFor(user.identity);
    } catch (error) {
      throw new MemoryError('USER_MISMATCH', `forUser needs a user from startSession: ${(error as Error).message}`, { cause: error });
    }
    if (user.id !== expected) {
      throw new MemoryError(
        'USER_MISMATCH',
        `user id ${String(user.id)} is not the id of identity ${JSON.stringify(user.identity)} in namespace ${this.namespace}; pass the user that startSession returned`,
      );
    }
    return new UserMemory(this.#state, user);
  }

  get tenant(): string {
    return this.#state.tenant;
  }

  /** Key id of MEMORY_ENCRYPTION_KEY, or undefined when no key is configured. */
  get encryptionKeyId(): string | undefined {
    return this.#state.cipher?.currentKeyId;
  }

  /**
   * Re-encrypt every stored secret that is not under the current key (MEMORY_ENCRYPTION_KEY),
   * reading old ones with MEMORY_ENCRYPTION_PREVIOUS_KEYS. Each row is replaced only if it did not
   * change since it was read; a row that did is read again.
   */
  async rotateSecrets(batchSize = 100): Promise<RotationReport> {
    const cipher = this.#state.cipher;
    if (!cipher) throw new MemoryError('ENCRYPTION_KEY_MISSING', 'rotating secrets needs MEMORY_ENCRYPTION_KEY (the new key) and MEMORY_ENCRYPTION_PREVIOUS_KEYS (the old ones)');
    const report: RotationReport = { rotated: 0, failed: [], keyId: cipher.currentKeyId };
    const skip = new Set<string>();
    for (;;) {
      const rows = (await this.#state.transport.call('memory_settings_to_rotate', { p_kid: cipher.currentKeyId, p_limit: batchSize + skip.size }, 'rows')) as Array<{
        user_id: string;
        tenant_id: string;
        secrets: Record<string, EncryptedSecret>;
        version: number | string;
      }>;
      const todo = rows.filter((r) => !skip.has(`${r.user_id}/${r.tenant_id}`));
      if (todo.length === 0) return report;
      for (const row of todo) {
        const reencrypted: Record<string, EncryptedSecret> = {};
        try {
          for (const [name, secret] of Object.entries(row.secrets)) {
            const context = secretContext(row.user_id, row.tenant_id, name);
            reencrypted[name] = secret.kid === cipher.currentKeyId ? secret : cipher.encrypt(cipher.decrypt(secret, context, name), context);
          }
        } catch (error) {
          skip.add(`${row.user_id}/${row.tenant_id}`);
          report.failed.push({ userId: row.user_id, tenant: row.tenant_id, reason: (error as Error).message });
          continue;
        }
        const replaced = await this.#state.transport.call(
          'memory_replace_secrets',
          { p_user_id: row.user_id, p_tenant_id: row.tenant_id, p_secrets: jsonArg(reencrypted), p_expected_version: Number(row.version), p_component: this.#state.component },
          'value',
        );
        if (replaced === true) report.rotated += 1;
      }
    }
  }

  /** Everything the database holds about an identity, without provisioning it (for `inspect`). */
  async profile(identity: string): Promise<Profile> {
    const userId = this.userIdFor(identity);
    const json = (await this.#state.transport.call('memory_profile', { p_user_id: userId }, 'value')) as ProfileJson;
    const row = json.user;
    return {
      userId,
      identity,
      user: row
        ? { ...toUser(row), authUserId: row.auth_user_id ?? null }
        : null,
      memoryCount: Number(json.memory_count),
      settings: (json.settings ?? []).map((s) => toSettings(s)!),
      audit: (json.audit ?? []).map((a) => ({ at: new Date(a.at), action: a.action, component: a.component, tenant: a.tenant_id, detail: a.detail })),
    };
  }

  /**
   * Link the identity's memory user to a Supabase Auth user (null unlinks), so that a person signed
   * in as that Auth user can reach this memory under Row Level Security. Audited.
   */
  async link(identity: string, authUserId: string | null): Promise<{ previous: string | null }> {
    const userId = this.userIdFor(identity);
    if (authUserId !== null && !isUuid(authUserId)) {
      throw new MemoryError('INVALID_OPTION', `auth user id ${JSON.stringify(authUserId)} is not a UUID (copy it from Authentication > Users)`);
    }
    const json = (await this.#state.transport.call(
      'memory_link',
      { p_user_id: userId, p_auth_user_id: authUserId, p_component: this.#state.component },
      'value',
    )) as { previous_auth_user_id: string | null };
    return { previous: json.previous_auth_user_id ?? null };
  }

  /**
   * Whether the backend answers now: one cheap call. Never throws; `down` carries the error code.
   * The worker's health endpoint reports it.
   */
  async health(): Promise<{ state: 'up' | 'down'; backend: BackendInfo; latencyMs: number; error?: string }> {
    const started = performance.now();
    try {
      await this.#state.transport.call('memory_schema_version', {}, 'value');
      return { state: 'up', backend: this.backend, latencyMs: performance.now() - started };
    } catch (error) {
      return {
        state: 'down',
        backend: this.backend,
        latencyMs: performance.now() - started,
        error: isMemoryError(error) ? `${error.code}: ${error.message}` : String(error),
      };
    }
  }

  /** What `lk-memory doctor` checks about the database. */
  diagnostics(): Promise<Diagnostics> {
    return readDiagnostics(this.#state.transport);
  }

  /** Where writes wait while the database is unreachable (undefined: no journal). */
  get journal(): Journal | undefined {
    return this.#state.journal;
  }

  /** Replay the journal now: this process's writes and those left by processes that died. */
  async sync(): Promise<ReplayReport> {
    if (!this.#state.journal) return { applied: 0, older: 0, remaining: 0, problems: [], skippedFiles: 0 };
    return this.#state.journal.replay((op) => this.#apply(op));
  }

  /** Keep replaying in the background (with backoff) while writes are pending. */
  startBackgroundSync(options?: { minMs?: number; maxMs?: number }): void {
    this.#state.journal?.startBackgroundReplay((op) => this.#apply(op), options);
  }

  /** Pending journal writes of an identity (for `inspect`). */
  async pendingFor(identity: string): Promise<JournalOp[]> {
    return this.#state.journal ? this.#state.journal.pendingFor(this.userIdFor(identity)) : [];
  }

  #pendingMigration = false;

  /** The database was unreachable at open: apply the migrations before the first replay. */
  migrateBeforeReplay(): void {
    this.#pendingMigration = true;
  }

  /** Send one journal entry; idempotent, and an older write never replaces a newer one (write clocks). */
  async #apply(op: JournalOp): Promise<ApplyOutcome> {
    if (this.#pendingMigration) {
      try {
        await this.migrate();
        this.#pendingMigration = false;
      } catch (error) {
        throw new Unreachable(`migrations not applied yet: ${(error as Error).message}`);
      }
    }
    const once = async (): Promise<ApplyOutcome> => {
      const t = this.#state.transport;
      if (op.op === 'store') {
        const result = (await t.call(
          'memory_store',
          { p_user_id: op.userId, p_category: op.category, p_key: op.key, p_value: op.value, p_clock: op.clock },
          'value',
        )) as { applied: boolean };
        return result.applied ? 'applied' : 'older';
      }
      if (op.op === 'forget') {
        await t.call('memory_forget', { p_user_id: op.userId, p_category: op.category, p_key: op.key, p_clock: op.clock }, 'value');
        return 'applied';
      }
      await t.call(
        'memory_save_settings',
        {
          p_user_id: op.userId,
          p_tenant_id: op.tenant,
          p_config: op.config === null ? null : jsonArg(op.config),
          p_secrets: jsonArg(op.secrets),
          p_remove_secrets: jsonArg(op.removeSecrets),
          p_component: `${this.#state.component}:journal`,
          p_clock: op.clock,
        },
        'value',
      );
      return 'applied';
    };
    try {
      try {
        return await once();
      } catch (error) {
        if (!isMemoryError(error, 'USER_NOT_PROVISIONED')) throw error;
        await this.#state.transport.call('memory_provision', { p_user_id: op.userId, p_identity: op.identity }, 'value');
        return await once();
      }
    } catch (error) {
      // Not there, or not ready for us yet (no schema, or a PostgREST cache behind): keep the
      // entry and try again later. Anything else is this entry's own problem.
      if (isUnreachable(error) || isMemoryError(error, 'SCHEMA_NOT_MIGRATED') || isMemoryError(error, 'SCHEMA_CACHE_STALE')) {
        throw new Unreachable((error as Error).message);
      }
      throw error;
    }
  }

  /** Apply pending schema migrations (openMemory does this on open unless told not to). */
  migrate(): Promise<MigrationResult> {
    return migrate(this.#state.transport);
  }

  async close(): Promise<void> {
    if (this.#state.closed) return;
    this.#state.closed = true;
    await this.#state.journal?.close();
    await this.#state.transport.close();
  }
}
