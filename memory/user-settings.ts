import { MemoryError, isMemoryError } from './errors.js';
import { clockTime } from './journal/clock.js';
import type { JournalOp } from './journal/journal.js';
import { rpc } from './rpc.js';
import { KEY_VARIABLE, secretContext, type EncryptedSecret, type SecretCipher } from './settings/cipher.js';
import { checkConfig, checkSecretNames, checkSecrets, checkTenant } from './settings/schema.js';
import { toSettings, type SaveSettingsInput, type StoredSettings } from './settings/settings.js';
import { liveTransport, type StoreState } from './store-state.js';
import { jsonArg } from './transports/call.js';
import type { UserRef } from './types.js';
import { writeOrJournal } from './write-or-journal.js';

type SettingsOp = Extract<JournalOp, { op: 'settings' }>;

function requireCipher(state: StoreState, action: string): SecretCipher {
  if (!state.cipher) {
    throw new MemoryError(
      'ENCRYPTION_KEY_MISSING',
      `${action} needs ${KEY_VARIABLE}: set it to 32 random bytes (openssl rand -base64 32)`,
    );
  }
  return state.cipher;
}

/**
 * Save a user's agent settings for a tenant in one round trip. Everything is validated before the
 * database; secrets are encrypted here, before they leave the process. The upsert names its
 * conflict target, so repeated and concurrent saves update one row. A save that would leave the
 * row with a secret no configured key can read (a wrong MEMORY_ENCRYPTION_KEY) is refused.
 */
export async function saveSettings(
  state: StoreState,
  user: UserRef,
  input: SaveSettingsInput,
): Promise<StoredSettings> {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new MemoryError(
      'INVALID_SETTINGS',
      'saveSettings needs an object such as { config, secrets, removeSecrets }',
    );
  }
  const tenant = checkTenant(input.tenant ?? state.tenant);
  const config = input.config === undefined ? undefined : checkConfig(input.config);
  const secrets = checkSecrets(input.secrets ?? {});
  const remove = checkSecretNames(input.removeSecrets ?? []);
  const names = Object.keys(secrets);
  const encrypted: Record<string, EncryptedSecret> = {};
  if (names.length > 0) {
    const cipher = requireCipher(state, 'saving secrets');
    for (const name of names) encrypted[name] = cipher.encrypt(secrets[name]!, secretContext(user.id, tenant, name));
  }
  const written = await writeOrJournal(
    state,
    (transport) =>
      rpc(transport, 'memory_save_settings', {
        p_user_id: user.id,
        p_tenant_id: tenant,
        p_config: config === undefined ? null : jsonArg(config),
        p_secrets: jsonArg(encrypted),
        p_remove_secrets: jsonArg(remove),
        p_component: state.component,
        p_clock: null,
        p_key_ids: names.length > 0 ? state.cipher!.knownKeyIds : null,
      }),
    (clock): SettingsOp => ({
      op: 'settings',
      userId: user.id,
      identity: user.identity,
      tenant,
      config: config === undefined ? null : (config as Record<string, unknown>),
      // A journaled secret keeps the clock of the moment it was set: on replay, of two writes of
      // one secret the later one wins.
      secrets: Object.fromEntries(Object.entries(encrypted).map(([name, secret]) => [name, { ...secret, at: clock }])),
      removeSecrets: remove,
      clock,
    }),
  );
  if (written.via === 'database') {
    if (written.result.clock) state.clock.observe(written.result.clock);
    return { ...toSettings(written.result)!, savedTo: 'database' };
  }
  return {
    tenant,
    config: config ?? {},
    secretNames: names.sort(),
    encryptedSecrets: encrypted,
    version: 0,
    updatedAt: clockTime(written.clock),
    savedTo: 'journal',
  };
}

/** Saves of one tenant still waiting in the journal, oldest first, laid over the stored settings. */
function overlaySettings(
  stored: StoredSettings | null,
  tenant: string,
  pending: readonly JournalOp[],
): StoredSettings | null {
  const ops = pending
    .filter((op): op is SettingsOp => op.op === 'settings' && op.tenant === tenant)
    .sort((a, b) => (a.clock < b.clock ? -1 : 1));
  if (ops.length === 0) return stored;
  let merged: StoredSettings = stored ?? {
    tenant,
    config: {},
    secretNames: [],
    encryptedSecrets: {},
    version: 0,
    updatedAt: clockTime(ops[0]!.clock),
  };
  for (const op of ops) {
    const secrets = { ...merged.encryptedSecrets };
    for (const name of op.removeSecrets) if ((secrets[name]?.at ?? '') < op.clock) delete secrets[name];
    for (const [name, secret] of Object.entries(op.secrets))
      if ((secrets[name]?.at ?? '') <= (secret.at ?? op.clock)) secrets[name] = secret;
    merged = {
      ...merged,
      config: op.config ? op.config : merged.config,
      encryptedSecrets: secrets,
      secretNames: Object.keys(secrets).sort(),
      updatedAt: clockTime(op.clock),
      savedTo: 'journal',
    };
  }
  return merged;
}

/** A user's settings for a tenant, secrets still encrypted; null when none were saved. */
export async function getSettings(state: StoreState, user: UserRef, tenant?: string): Promise<StoredSettings | null> {
  const t = checkTenant(tenant ?? state.tenant);
  const stored = toSettings(
    await rpc(liveTransport(state), 'memory_get_settings', { p_user_id: user.id, p_tenant_id: t }),
  );
  const pending = state.journal ? await state.journal.pendingFor(user.id) : [];
  return overlaySettings(stored, t, pending);
}

/**
 * Decrypt the secrets of settings read for this user. A failure is recorded in the audit log
 * (names and key ids only) and raised as DECRYPTION_FAILED or ENCRYPTION_KEY_MISSING.
 */
export async function revealSecrets(
  state: StoreState,
  user: UserRef,
  settings: StoredSettings,
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  try {
    const cipher = requireCipher(state, 'reading secrets');
    for (const name of settings.secretNames) {
      out[name] = cipher.decrypt(settings.encryptedSecrets[name]!, secretContext(user.id, settings.tenant, name), name);
    }
    return out;
  } catch (error) {
    // Best effort: an audit write that fails must not hide the error being reported.
    await rpc(state.transport, 'memory_audit', {
      p_user_id: user.id,
      p_tenant_id: settings.tenant,
      p_action: 'secret.decrypt_failed',
      p_component: state.component,
      p_detail: jsonArg({
        code: isMemoryError(error) ? error.code : 'UNKNOWN',
        secrets: settings.secretNames,
        key_ids: [...new Set(Object.values(settings.encryptedSecrets).map((s) => s.kid))],
      }),
    }).catch(() => {});
    throw error;
  }
}
