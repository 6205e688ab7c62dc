import { validate as isUuid } from 'uuid';
import { DEFAULTS } from './defaults.js';
import { MemoryError } from './errors.js';
import { rpc } from './rpc.js';
import { secretContext, type EncryptedSecret } from './settings/cipher.js';
import { toSettings, type StoredSettings } from './settings/settings.js';
import type { StoreState } from './store-state.js';
import { jsonArg } from './transports/call.js';
import { toUser } from './users.js';
import type { User } from './types.js';

/**
 * Operations an operator runs across users (rotation, inspection, Auth links). They are not on
 * UserMemory on purpose: a session's handle can reach its own user only.
 */

export interface Profile {
  userId: string;
  identity: string;
  /** Null when the identity was never provisioned. */
  user: (User & { authUserId: string | null }) | null;
  /**
   * The consent the caller recorded (null: never said, or not provisioned; the deployment's
   * MEMORY_CONSENT_DEFAULT applies) and when.
   */
  consent: { recorded: 'granted' | 'denied' | null; at: Date | null };
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

/**
 * Re-encrypt every stored secret that is not under the current key (MEMORY_ENCRYPTION_KEY),
 * reading old ones with MEMORY_ENCRYPTION_PREVIOUS_KEYS. Each row is replaced only if it did not
 * change since it was read; a row that did is read again.
 */
export async function rotateSecrets(
  state: StoreState,
  batchSize: number = DEFAULTS.rotationBatch,
): Promise<RotationReport> {
  const cipher = state.cipher;
  if (!cipher)
    throw new MemoryError(
      'ENCRYPTION_KEY_MISSING',
      'rotating secrets needs MEMORY_ENCRYPTION_KEY (the new key) and MEMORY_ENCRYPTION_PREVIOUS_KEYS (the old ones)',
    );
  const report: RotationReport = { rotated: 0, failed: [], keyId: cipher.currentKeyId };
  const skip = new Set<string>();
  for (;;) {
    const rows = await rpc(state.transport, 'memory_settings_to_rotate', {
      p_kid: cipher.currentKeyId,
      p_limit: batchSize + skip.size,
    });
    const todo = rows.filter((r) => !skip.has(`${r.user_id}/${r.tenant_id}`));
    if (todo.length === 0) return report;
    for (const row of todo) {
      const reencrypted: Record<string, EncryptedSecret> = {};
      try {
        for (const [name, secret] of Object.entries(row.secrets as Record<string, EncryptedSecret>)) {
          const context = secretContext(row.user_id, row.tenant_id, name);
          reencrypted[name] =
            secret.kid === cipher.currentKeyId
              ? secret
              : {
                  ...cipher.encrypt(cipher.decrypt(secret, context, name), context),
                  ...(secret.at ? { at: secret.at } : {}),
                };
        }
      } catch (error) {
        skip.add(`${row.user_id}/${row.tenant_id}`);
        report.failed.push({ userId: row.user_id, tenant: row.tenant_id, reason: (error as Error).message });
        continue;
      }
      const replaced = await rpc(state.transport, 'memory_replace_secrets', {
        p_user_id: row.user_id,
        p_tenant_id: row.tenant_id,
        p_secrets: jsonArg(reencrypted),
        p_expected_version: row.version,
        p_component: state.component,
      });
      if (replaced) report.rotated += 1;
    }
  }
}

/** Everything the database holds about a user, without provisioning it (for `inspect`). */
export async function readProfile(state: StoreState, userId: string, identity: string): Promise<Profile> {
  const json = await rpc(state.transport, 'memory_profile', { p_user_id: userId });
  return {
    userId,
    identity,
    user: json.user ? { ...toUser(json.user), authUserId: json.user.auth_user_id } : null,
    consent: {
      recorded: json.user?.memory_consent ?? null,
      at: json.user?.memory_consent_at ? new Date(json.user.memory_consent_at) : null,
    },
    memoryCount: json.memory_count,
    settings: json.settings.map((s) => toSettings(s)!),
    audit: json.audit.map((a) => ({
      at: new Date(a.at),
      action: a.action,
      component: a.component,
      tenant: a.tenant_id,
      detail: a.detail,
    })),
  };
}

/**
 * Link a memory user to a Supabase Auth user (null unlinks), so that a person signed in as that
 * Auth user can reach this memory under Row Level Security. Audited.
 */
export async function linkAuthUser(
  state: StoreState,
  userId: string,
  authUserId: string | null,
): Promise<{ previous: string | null }> {
  if (authUserId !== null && !isUuid(authUserId)) {
    throw new MemoryError(
      'INVALID_OPTION',
      `auth user id ${JSON.stringify(authUserId)} is not a UUID (copy it from Authentication > Users)`,
    );
  }
  const json = await rpc(state.transport, 'memory_link', {
    p_user_id: userId,
    p_auth_user_id: authUserId,
    p_component: state.component,
  });
  return { previous: json.previous_auth_user_id };
}
