import { DEFAULTS, DEFAULT_MEMORY_LIMIT, MAX_MEMORY_LIMIT } from './defaults.js';
import { MemoryError, isMemoryError } from './errors.js';
import { identityToUserId } from './identity.js';
import { checkLimit } from './labels.js';
import { migrate, type MigrationResult } from './migrations/index.js';
import type { SecretCipher } from './settings/cipher.js';
import { checkTenant } from './settings/schema.js';
import { toSettings } from './settings/settings.js';
import { readDiagnostics, type Diagnostics } from './diagnostics.js';
import type { Embedder, EmbeddingStatus } from './embeddings/embedder.js';
import { processClock, type WriteClock } from './journal/clock.js';
import { Unreachable, type ApplyOutcome, type Journal, type JournalOp, type ReplayReport } from './journal/journal.js';
import { TOMBSTONE_MAX_AGE_DAYS, checkLifecycle, type Lifecycle } from './lifecycle.js';
import { livePending, mergePending, toMemory } from './overlay.js';
import { applyJournalOp } from './replay.js';
import { rpc, type RpcArgs, type RpcResult } from './rpc.js';
import type { GroupCommit } from './combiner.js';
import { groupCommitters } from './group-commit.js';
import { RecentWrites, type StoreState } from './store-state.js';
import { requireSql, type RpcTransport, type SqlTransport, type TransportKind } from './transports/transport.js';
import type {
  ConsentChange,
  MemoryConsent,
  PurgeReport,
  SessionStart,
  StartSessionOptions,
  User,
  UserRef,
} from './types.js';
import { UserMemory } from './user-memory.js';
import { toUser, type UserRow } from './users.js';
import { linkAuthUser, readProfile, rotateSecrets, type Profile, type RotationReport } from './admin.js';
import { eraseUser, type ErasureReport } from './erasure.js';
import { exportUser } from './export.js';
import type { ExportDocument } from './export-format.js';

export { DEFAULT_MEMORY_LIMIT, MAX_MEMORY_LIMIT };
export type { Profile, RotationReport, ErasureReport, ExportDocument };

/** What group commit did so far (see MemoryStore.groupCommitStats). */
export interface GroupCommitStats {
  /** Online stores sent, and the database calls that carried them. */
  stores: number;
  storeCalls: number;
  /** Combined calls the database refused as a whole; their stores then went alone (and count as calls). */
  storeBatchesRefused: number;
  /** Plain reads (retrieve) sent, the calls that carried them, and combined reads refused as a whole. */
  reads: number;
  readCalls: number;
  readBatchesRefused: number;
}

export interface BackendInfo {
  kind: TransportKind;
  location: string;
}

const transports = new WeakMap<MemoryStore, RpcTransport>();

/**
 * Internal (not exported by the package): the SQL transport behind a store, for this project's own
 * tests, benchmark and diagnostics. Application code reaches data only through UserMemory.
 */
export function transportOf(store: MemoryStore): SqlTransport {
  return requireSql(transports.get(store)!, 'raw SQL');
}

/** Internal, as transportOf: the transport behind a store, whatever it is (Supabase included). */
export function rpcTransportOf(store: MemoryStore): RpcTransport {
  return transports.get(store)!;
}

/**
 * Settings whose stored form no longer passes validation (changed outside this library) do not
 * cost the caller their memory: the session starts without them and says why.
 */
function sessionSettings(
  row: RpcResult<'memory_start_session'>['settings'],
): Pick<SessionStart, 'settings' | 'settingsError'> {
  try {
    return { settings: toSettings(row) };
  } catch (error) {
    if (!isMemoryError(error, 'INVALID_SETTINGS') && !isMemoryError(error, 'DECRYPTION_FAILED')) throw error;
    return { settings: null, settingsError: `${error.code}: ${error.message}` };
  }
}

/** The memory layer for a whole worker: provisions users and hands out per-user handles. */
export class MemoryStore {
  readonly namespace: string;
  readonly #state: StoreState;

  constructor(
    transport: RpcTransport,
    options: {
      namespace: string;
      maxValueBytes: number;
      cipher?: SecretCipher;
      tenant?: string;
      component?: string;
      journal?: Journal;
      /** Clock for journaled writes (default: the process's one). Tests give each "host" its own. */
      clock?: WriteClock;
      /** Optional embeddings (see openMemory's `embeddings`). */
      embeddings?: Embedder;
      /** Consent default, retention and cap (default: granted, none, none). */
      lifecycle?: Partial<Lifecycle>;
      /** Group commit of online stores (default DEFAULTS.groupCommit); false: every store alone. */
      groupCommit?: GroupCommit | false;
    },
  ) {
    this.namespace = options.namespace;
    this.#state = {
      transport,
      maxValueBytes: options.maxValueBytes,
      cipher: options.cipher,
      tenant: options.tenant ?? DEFAULTS.tenant,
      component: options.component ?? DEFAULTS.component,
      journal: options.journal,
      clock: options.clock ?? processClock,
      recent: new RecentWrites(),
      embeddings: options.embeddings,
      lifecycle: checkLifecycle(options.lifecycle ?? {}),
      groupCommit:
        options.groupCommit === false ? undefined : groupCommitters(options.groupCommit ?? DEFAULTS.groupCommit),
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

  /**
   * Group commit so far: online stores and plain reads sent, and the database calls that carried
   * them (all 0 when it is off).
   */
  get groupCommitStats(): GroupCommitStats {
    const g = this.#state.groupCommit;
    return {
      stores: g?.stores.items ?? 0,
      storeCalls: g?.stores.calls ?? 0,
      storeBatchesRefused: g?.stores.refused ?? 0,
      reads: g?.reads.items ?? 0,
      readCalls: g?.reads.calls ?? 0,
      readBatchesRefused: g?.reads.refused ?? 0,
    };
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
    const session = await this.#provisioning(identity, userId, 'memory_start_session', {
      p_user_id: userId,
      p_identity: identity,
      p_memory_limit: limit,
      p_tenant_id: tenant,
      p_retention_days: this.#state.lifecycle.retentionDays,
    });
    this.#checkOwnUser(session.user, identity, userId);
    // The user's own writes still waiting in the journal are part of what they see; rows carry
    // their clocks, so a pending write older than the database's row does not win.
    const pending = this.#state.journal
      ? livePending(await this.#state.journal.pendingFor(userId), this.#state.lifecycle.retentionDays)
      : [];
    return {
      user: toUser(session.user),
      firstSession: session.first_session,
      memories: mergePending(session.memories, pending).slice(0, limit).map(toMemory),
      consent: session.user.memory_consent ?? this.#state.lifecycle.consentDefault,
      ...sessionSettings(session.settings),
    };
  }

  /** Consent default, retention and cap of this store (MEMORY_CONSENT_DEFAULT, MEMORY_RETENTION_DAYS, MEMORY_MAX_PER_USER). */
  get lifecycle(): Readonly<Lifecycle> {
    return this.#state.lifecycle;
  }

  /** A recorded consent state as it applies in this deployment (null: MEMORY_CONSENT_DEFAULT). */
  effectiveConsent(recorded: 'granted' | 'denied' | null | undefined): MemoryConsent {
    return recorded ?? this.#state.lifecycle.consentDefault;
  }

  /**
   * Record an identity's memory consent (`lk-memory consent`): see UserMemory.setConsent. A denial
   * erases what is stored for them. Provisions the user if new; audited.
   */
  setConsent(identity: string, consent: 'granted' | 'denied'): Promise<ConsentChange> {
    return this.forIdentity(identity).setConsent(consent);
  }

  /**
   * Remove expired memories (their own expiry passed, or not updated for MEMORY_RETENTION_DAYS)
   * and tombstones older than any journal entry can be, in batches of `batchSize` rows (default
   * 1000): each batch is one statement in its own short transaction, so no lock is held for long.
   * Expired memories are never served anyway; this only reclaims their space. Audited per user.
   */
  async purge(options: { batchSize?: number; onBatch?: (report: PurgeReport) => void } = {}): Promise<PurgeReport> {
    const batch = checkLimit(options.batchSize ?? DEFAULTS.purgeBatch, 'batchSize', 10_000);
    const report: PurgeReport = { memories: 0, tombstones: 0, batches: 0 };
    for (;;) {
      if (this.#state.closed) break;
      const done = await rpc(this.#state.transport, 'memory_purge', {
        p_retention_days: this.#state.lifecycle.retentionDays,
        p_tombstone_max_age_days: TOMBSTONE_MAX_AGE_DAYS,
        p_batch: batch,
        p_component: this.#state.component,
      });
      report.memories += done.memories;
      report.tombstones += done.tombstones;
      report.batches += 1;
      options.onBatch?.({ ...report });
      if (done.memories < batch && done.tombstones < batch) break;
    }
    return report;
  }

  #purgeTimer: NodeJS.Timeout | undefined;
  #purging: Promise<unknown> | undefined;

  /**
   * Purge now and then every `intervalMs` (default MEMORY_PURGE_INTERVAL_MS, else hourly) until
   * close(). For one process per host (the worker's main process: serveMemory starts it). A failed
   * purge is reported to `onError` and tried again at the next interval.
   */
  startBackgroundPurge(options: {
    intervalMs: number;
    onError?: (error: unknown) => void;
    onDone?: (report: PurgeReport) => void;
  }): void {
    if (this.#purgeTimer || options.intervalMs <= 0) return;
    const run = () => {
      if (this.#purging || this.#state.closed) return;
      this.#purging = this.purge()
        .then((report) => options.onDone?.(report))
        .catch((error: unknown) => options.onError?.(error))
        .finally(() => (this.#purging = undefined));
    };
    this.#purgeTimer = setInterval(run, options.intervalMs);
    this.#purgeTimer.unref();
    run();
  }

  /** Provision a user without starting a session (for administrative writes). One round trip. */
  async provision(identity: string): Promise<User> {
    const userId = this.userIdFor(identity);
    const user = await this.#provisioning(identity, userId, 'memory_provision', {
      p_user_id: userId,
      p_identity: identity,
    });
    this.#checkOwnUser(user, identity, userId);
    return toUser(user);
  }

  async #provisioning<F extends 'memory_start_session' | 'memory_provision'>(
    identity: string,
    userId: string,
    fn: F,
    args: RpcArgs[F],
  ): Promise<RpcResult<F>> {
    if (this.#state.closed)
      throw new MemoryError('CLOSED', 'the memory store was closed; open a new one with openMemory()');
    try {
      return await rpc(this.#state.transport, fn, args);
    } catch (error) {
      if (isMemoryError(error, 'BACKEND_UNAVAILABLE')) throw error;
      const reason = isMemoryError(error) ? error.code : 'DATABASE_ERROR';
      throw new MemoryError(
        'PROVISIONING_FAILED',
        `could not provision ${JSON.stringify(identity)} as ${userId}: ${(error as Error).message}`,
        {
          cause: error,
          reason,
        },
      );
    }
  }

  /** Belt and braces: whatever the database returned, a caller is only ever handed its own user. */
  #checkOwnUser(user: UserRow, identity: string, userId: string): void {
    if (user.id !== userId || user.identity !== identity) {
      throw new MemoryError(
        'PROVISIONING_FAILED',
        `could not provision ${JSON.stringify(identity)}: the database returned no matching user`,
      );
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
      throw new MemoryError('USER_MISMATCH', `forUser needs a user from startSession: ${(error as Error).message}`, {
        cause: error,
      });
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

  /** Re-encrypt every stored secret that is not under the current key (see admin.ts). */
  rotateSecrets(batchSize?: number): Promise<RotationReport> {
    return rotateSecrets(this.#state, batchSize);
  }

  /** Everything the database holds about an identity, without provisioning it (for `inspect`). */
  profile(identity: string): Promise<Profile> {
    return readProfile(this.#state, this.userIdFor(identity), identity);
  }

  /**
   * Everything stored about an identity as one JSON document (docs/export-format.md): the user
   * row, consent, every memory with its times and expiry, deletions, settings with secrets masked,
   * the audit entries about the user, and writes still waiting in this host's journal. One
   * database call, audited ('export'). USER_NOT_FOUND when nothing is stored for the identity.
   */
  exportUser(identity: string): Promise<ExportDocument> {
    return exportUser(this.#state, { id: this.userIdFor(identity), identity }, this.namespace);
  }

  /**
   * Erase an identity (right to be forgotten): its user row (Auth link and consent with it),
   * memories, deletions, settings, embeddings and audit entries, in one database transaction,
   * then its pending writes in this host's journal. Leaves one audit record without user id or
   * content (see erasure.ts), by which replay anywhere drops the user's older journal entries.
   * USER_NOT_FOUND when nothing is stored for the identity; needs the database.
   */
  eraseUser(identity: string): Promise<ErasureReport> {
    return eraseUser(this.#state, this.userIdFor(identity), identity);
  }

  /**
   * Link the identity's memory user to a Supabase Auth user (null unlinks), so that a person signed
   * in as that Auth user can reach this memory under Row Level Security. Audited.
   */
  link(identity: string, authUserId: string | null): Promise<{ previous: string | null }> {
    return linkAuthUser(this.#state, this.userIdFor(identity), authUserId);
  }

  /**
   * Whether the backend answers now: one cheap call. Never throws; `down` carries the error code.
   * The worker's health endpoint reports it.
   */
  async health(): Promise<{ state: 'up' | 'down'; backend: BackendInfo; latencyMs: number; error?: string }> {
    const started = performance.now();
    try {
      await rpc(this.#state.transport, 'memory_schema_version', {});
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
    if (!this.#state.journal)
      return { applied: 0, older: 0, remaining: 0, problems: [], skippedFiles: 0, erased: 0, dropped: [] };
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

  /** Send one journal entry (see replay.ts), migrating first if the database was down at open. */
  async #apply(op: JournalOp): Promise<ApplyOutcome> {
    if (this.#pendingMigration) {
      try {
        await this.migrate();
        this.#pendingMigration = false;
      } catch (error) {
        throw new Unreachable(`migrations not applied yet: ${(error as Error).message}`);
      }
    }
    const outcome = await applyJournalOp(this.#state, op);
    if (op.op === 'store' && outcome === 'applied') this.#state.embeddings?.touch(op.userId);
    return outcome;
  }

  /**
   * Optional embeddings: whether they are configured, whether this database has vectors (and if
   * not, why and how to get them), and how the background embedding is doing.
   */
  async embeddingStatus(): Promise<EmbeddingStatus> {
    const embeddings = this.#state.embeddings;
    if (embeddings) return embeddings.status();
    return { configured: false, pendingUsers: 0, embedded: 0, failures: 0 };
  }

  /** Resolves when no memory written through this store is waiting to be embedded (at once without embeddings). */
  embeddingsSettled(): Promise<void> {
    return this.#state.embeddings?.settled() ?? Promise.resolve();
  }

  /** Apply pending schema migrations (openMemory does this on open unless told not to). */
  migrate(): Promise<MigrationResult> {
    return migrate(requireSql(this.#state.transport, 'migrating'));
  }

  async close(): Promise<void> {
    if (this.#state.closed) return;
    this.#state.closed = true;
    clearInterval(this.#purgeTimer);
    await this.#purging;
    // Stores and reads already accepted (waiting to be combined) are sent before the pool closes.
    await this.#state.groupCommit?.stores.idle();
    await this.#state.groupCommit?.reads.idle();
    await this.#state.embeddings?.close();
    await this.#state.journal?.close();
    await this.#state.transport.close();
  }
}
