import { erasureMarkers } from './erasure.js';
import { isMemoryError } from './errors.js';
import { checkJournalAge } from './lifecycle.js';
import { Unreachable, type ApplyOutcome, type JournalOp } from './journal/journal.js';
import { rpc } from './rpc.js';
import { isUnreachable, type StoreState } from './store-state.js';
import { jsonArg } from './transports/call.js';

/**
 * Send one journal entry to the database. Idempotent, and an older write never replaces a newer
 * one: each entry carries the clock of the moment it was made, and the database keeps the newer.
 * The entry was validated when the journal decoded it (same rules as a direct write).
 */
async function send(state: StoreState, op: JournalOp): Promise<ApplyOutcome> {
  const t = state.transport;
  switch (op.op) {
    case 'store': {
      // The database refuses a store for a caller who withdrew consent (CONSENT_DENIED) or has not
      // given it (CONSENT_REQUIRED), and one made before their latest denial: the entry is then set
      // aside as rejected, with that reason, and never applied.
      const { consentDefault, maxPerUser, retentionDays } = state.lifecycle;
      const result = await rpc(t, 'memory_store', {
        p_user_id: op.userId,
        p_category: op.category,
        p_key: op.key,
        p_value: op.value,
        p_clock: op.clock,
        p_expires_at: op.expiresAt ?? null,
        p_consent: consentDefault,
        p_max_per_user: maxPerUser,
        p_retention_days: retentionDays,
      });
      return result.applied ? 'applied' : 'older';
    }
    case 'forget':
      await rpc(t, 'memory_forget', {
        p_user_id: op.userId,
        p_category: op.category,
        p_key: op.key,
        p_clock: op.clock,
      });
      return 'applied';
    case 'settings': {
      const kids = Object.values(op.secrets).map((s) => s.kid);
      await rpc(t, 'memory_save_settings', {
        p_user_id: op.userId,
        p_tenant_id: op.tenant,
        p_config: op.config === null ? null : jsonArg(op.config),
        p_secrets: jsonArg(op.secrets),
        p_remove_secrets: jsonArg(op.removeSecrets),
        p_component: `${state.component}:journal`,
        p_clock: op.clock,
        // The writer could read what it wrote; the replaying process may know more keys.
        p_key_ids: kids.length > 0 ? [...new Set([...kids, ...(state.cipher?.knownKeyIds ?? [])])] : null,
      });
      return 'applied';
    }
  }
}

/**
 * Apply one entry, provisioning its user first if the database has never seen them, unless the
 * user was erased after the entry was made: then it is dropped (`erased`), so that a write waiting
 * in a journal never brings an erased user back (see erasure.ts). One more round trip per entry;
 * replay is not on any caller's path.
 */
export async function applyJournalOp(state: StoreState, op: JournalOp): Promise<ApplyOutcome> {
  // A store older than the journal's maximum age is set aside: the purge no longer keeps tombstones
  // that old, so it could bring back a memory deleted since. (A deletion or a settings save that old
  // cannot bring anything back: they replay as before.)
  if (op.op === 'store') checkJournalAge(op.clock);
  try {
    const erasedAt = await rpc(state.transport, 'memory_erased', { p_markers: erasureMarkers(state, op.userId) });
    if (erasedAt !== null && op.clock <= erasedAt) return 'erased';
    try {
      return await send(state, op);
    } catch (error) {
      if (!isMemoryError(error, 'USER_NOT_PROVISIONED')) throw error;
      await rpc(state.transport, 'memory_provision', { p_user_id: op.userId, p_identity: op.identity });
      return await send(state, op);
    }
  } catch (error) {
    // Not there, or not ready for us yet (no schema, a schema of another version, or a PostgREST
    // cache behind): keep the entry and try again later. Anything else is this entry's own problem.
    if (
      isUnreachable(error) ||
      isMemoryError(error, 'SCHEMA_NOT_MIGRATED') ||
      isMemoryError(error, 'SCHEMA_CACHE_STALE') ||
      isMemoryError(error, 'INVALID_RESPONSE')
    ) {
      throw new Unreachable((error as Error).message);
    }
    throw error;
  }
}
