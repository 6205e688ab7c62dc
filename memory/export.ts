import { MemoryError } from './errors.js';
import { EXPORT_FORMAT, EXPORT_VERSION, ExportDocumentSchema, type ExportDocument } from './export-format.js';
import { clockTime } from './journal/clock.js';
import type { JournalOp } from './journal/journal.js';
import { rpc } from './rpc.js';
import { isEncryptedSecret } from './settings/cipher.js';
import { maskSecret } from './settings/settings.js';
import { liveTransport, type StoreState } from './store-state.js';

/**
 * Export (right of access, portability): everything stored about one user as one document
 * (export-format.ts), from one database call (memory_export_user, which audits it) and this host's
 * journal. Secrets are masked: the document says which exist and under which key, never a value
 * (an export file is easily sent on; decrypted secrets would need the deployment's key anyway).
 */

const iso = (t: string | Date): string => new Date(t).toISOString();

function mask(secrets: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(secrets).map(([name, secret]) => [
      name,
      isEncryptedSecret(secret) ? maskSecret(secret) : '******** (not in the encrypted format)',
    ]),
  );
}

function pendingView(op: JournalOp): ExportDocument['pendingJournal'][number] {
  const at = clockTime(op.clock).toISOString();
  switch (op.op) {
    case 'store':
      return { op: 'store', category: op.category, key: op.key, value: op.value, at };
    case 'forget':
      return { op: 'forget', category: op.category, key: op.key, at };
    case 'settings':
      return {
        op: 'settings',
        tenant: op.tenant,
        config: op.config,
        secrets: mask(op.secrets),
        removeSecrets: op.removeSecrets,
        at,
      };
  }
}

/**
 * The export document of one user. USER_NOT_FOUND when neither the database nor this host's
 * journal holds anything of the identity.
 */
export async function exportUser(
  state: StoreState,
  user: { id: string; identity: string },
  namespace: string,
): Promise<ExportDocument> {
  const transport = liveTransport(state);
  const stored = await rpc(transport, 'memory_export_user', { p_user_id: user.id, p_component: state.component });
  const pending = state.journal ? await state.journal.pendingFor(user.id) : [];
  if (!stored && pending.length === 0) {
    throw new MemoryError(
      'USER_NOT_FOUND',
      `nothing is stored for ${JSON.stringify(user.identity)} (user id ${user.id}) in the database or in this host's journal: check the identity and the namespace (MEMORY_UUID_NAMESPACE)`,
    );
  }
  const row = stored?.user ?? null;
  if (row && (row.id !== user.id || row.identity !== user.identity)) {
    throw new MemoryError(
      'INVALID_RESPONSE',
      `memory_export_user answered with another user than ${user.id}: refused; run \`lk-memory migrate\``,
    );
  }
  const document: ExportDocument = {
    format: EXPORT_FORMAT,
    version: EXPORT_VERSION,
    exportedAt: new Date().toISOString(),
    identity: user.identity,
    userId: user.id,
    namespace,
    user: row
      ? {
          createdAt: iso(row.created_at),
          lastSeenAt: iso(row.last_seen_at),
          sessionCount: row.session_count,
          authUserId: row.auth_user_id,
        }
      : null,
    consent: {
      state: row?.memory_consent ?? null,
      at: row?.memory_consent_at ? iso(row.memory_consent_at) : null,
    },
    memories: (stored?.memories ?? []).map((m) => ({
      category: m.category,
      key: m.key,
      value: m.value,
      createdAt: iso(m.created_at),
      updatedAt: iso(m.updated_at),
      expiresAt: m.expires_at === null ? null : iso(m.expires_at),
    })),
    deletions: (stored?.tombstones ?? []).map((t) => ({
      category: t.category,
      key: t.key,
      at: clockTime(t.clock).toISOString(),
    })),
    settings: (stored?.settings ?? []).map((s) => ({
      tenant: s.tenant_id,
      config: s.config,
      secrets: mask(s.secrets),
      version: s.version,
      updatedAt: iso(s.updated_at),
    })),
    audit: (stored?.audit ?? []).map((a) => ({
      at: iso(a.at),
      action: a.action,
      component: a.component,
      tenant: a.tenant_id,
      detail: a.detail,
    })),
    pendingJournal: pending.map(pendingView),
  };
  // What goes out is exactly what import accepts back.
  return ExportDocumentSchema.parse(document);
}
