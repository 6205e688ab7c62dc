import { randomBytes, randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MemoryError, MemoryStore, SecretCipher, type MemoryErrorCode, type UserMemory } from '../../memory/index.js';
import { rpcTransportOf } from '../../memory/store.js';
import type { BackendUnderTest } from '../support/backends.js';

const fresh = (label: string) => `${label}-${randomUUID()}@example.com`;

async function codeOf(run: () => Promise<unknown>): Promise<MemoryErrorCode | 'none'> {
  try {
    await run();
  } catch (error) {
    if (error instanceof MemoryError) return error.code;
    throw error;
  }
  return 'none';
}

/** The same store over the same database with another cipher (what a restart with new keys gives). */
function withCipher(backend: BackendUnderTest, cipher: SecretCipher | undefined): MemoryStore {
  return new MemoryStore(rpcTransportOf(backend.memory), {
    namespace: backend.memory.namespace,
    maxValueBytes: 16384,
    cipher,
  });
}

/**
 * Per-user agent settings, the persistence the original system lost: on every backend they must
 * land in the database, survive repeated and concurrent saves, and keep secrets encrypted.
 */
export function describeSettingsContract(getBackend: () => BackendUnderTest): void {
  describe('settings', () => {
    const user = async (label: string): Promise<UserMemory> => {
      const { memory } = getBackend();
      return memory.forUser((await memory.startSession(fresh(label))).user);
    };

    it('round trip: config and secrets saved, read back, decrypted, and loaded with the session', async () => {
      const { memory } = getBackend();
      const alice = await user('settings-alice');
      const saved = await alice.saveSettings({
        config: {
          voice: 'alloy',
          language: 'pt-BR',
          model: 'gpt-4.1-mini',
          instructions: 'Speak slowly.',
          externalAgentIds: { crm: 'agent-42' },
        },
        secrets: { OPENAI_API_KEY: 'sk-alice-very-secret', CRM_TOKEN: 'crm-token-alice' },
      });
      expect(saved).toMatchObject({ tenant: 'default', version: 1, secretNames: ['CRM_TOKEN', 'OPENAI_API_KEY'] });
      const read = await alice.getSettings();
      expect(read?.config).toEqual(saved.config);
      expect(await alice.revealSecrets(read!)).toEqual({
        OPENAI_API_KEY: 'sk-alice-very-secret',
        CRM_TOKEN: 'crm-token-alice',
      });

      // Secrets merge by name and can be removed; a save without config keeps the config.
      const merged = await alice.saveSettings({
        secrets: { CRM_TOKEN: 'rotated-token' },
        removeSecrets: ['OPENAI_API_KEY'],
      });
      expect(merged.secretNames).toEqual(['CRM_TOKEN']);
      expect(merged.config.voice).toBe('alloy');
      expect(await alice.revealSecrets(merged)).toEqual({ CRM_TOKEN: 'rotated-token' });

      // Session start reads them in the same single statement.
      const before = memory.statementCount;
      const session = await memory.startSession(alice.user.identity);
      expect(memory.statementCount - before).toBe(1);
      expect(session.settings?.config.instructions).toBe('Speak slowly.');
      expect(session.settings?.secretNames).toEqual(['CRM_TOKEN']);

      // Tenants are separate rows.
      await alice.saveSettings({ tenant: 'acme', config: { voice: 'verse' } });
      expect((await memory.startSession(alice.user.identity, { tenant: 'acme' })).settings?.config).toEqual({
        voice: 'verse',
      });
      expect((await alice.getSettings('default'))?.config.voice).toBe('alloy');
      expect(await alice.getSettings('nobody')).toBeNull();
    });

    it('100 saves in a row and 20 at once never fail, and every concurrent secret lands', async () => {
      const bob = await user('settings-bob');
      for (let i = 0; i < 100; i += 1) await bob.saveSettings({ config: { voice: 'alloy' } });
      expect((await bob.getSettings())?.version).toBe(100);

      const carol = await user('settings-carol');
      const saves = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) =>
          carol.saveSettings({ config: { model: `m${i}` }, secrets: { [`TOKEN_${i}`]: `value-${i}` } }),
        ),
      );
      expect(saves.filter((s) => s.status === 'rejected')).toEqual([]);
      const final = (await carol.getSettings())!;
      expect(final.version).toBe(20);
      expect(final.secretNames).toHaveLength(20);
      const secrets = await carol.revealSecrets(final);
      for (let i = 0; i < 20; i += 1) expect(secrets[`TOKEN_${i}`]).toBe(`value-${i}`);
    });

    it('stores no plaintext, and a ciphertext moved to another user does not decrypt', async () => {
      const backend = getBackend();
      const dave = await user('settings-dave');
      const erin = await user('settings-erin');
      const plaintext = `plaintext-${randomBytes(8).toString('hex')}`;
      await dave.saveSettings({ secrets: { API_KEY: plaintext } });
      const rows = await backend.sql<{ secrets: string; config: string }>(
        'select secrets::text as secrets, config::text as config from public.memory_settings where user_id = $1',
        [dave.user.id],
      );
      expect(rows).toHaveLength(1);
      expect(rows[0]!.secrets).not.toContain(plaintext);
      expect(rows[0]!.secrets).toContain('"kid"');
      const audit = await backend.sql<{ text: string }>(
        'select detail::text as text from public.memory_audit_log where user_id = $1',
        [dave.user.id],
      );
      expect(audit.length).toBeGreaterThan(0);
      for (const row of audit) expect(row.text).not.toContain(plaintext);

      // Copy dave's ciphertext into erin's row: bound to dave, it fails for erin.
      await erin.saveSettings({ config: {} });
      await backend.sql(
        'update public.memory_settings set secrets = (select secrets from public.memory_settings where user_id = $1) where user_id = $2',
        [dave.user.id, erin.user.id],
      );
      expect(await codeOf(async () => erin.revealSecrets((await erin.getSettings())!))).toBe('DECRYPTION_FAILED');
    });

    it('a wrong or missing key is a typed error naming the variable, and the failure is audited without the value', async () => {
      const backend = getBackend();
      const frank = await user('settings-frank');
      await frank.saveSettings({ secrets: { API_KEY: 'frank-secret-value' } });

      const wrong = withCipher(backend, new SecretCipher(randomBytes(32)));
      const asWrong = wrong.forUser(frank.user);
      let error: unknown;
      try {
        await asWrong.revealSecrets((await asWrong.getSettings())!);
      } catch (caught) {
        error = caught;
      }
      expect((error as MemoryError).code).toBe('DECRYPTION_FAILED');
      expect((error as MemoryError).message).toContain('MEMORY_ENCRYPTION_KEY');
      expect((error as MemoryError).message).not.toContain('frank-secret-value');
      const audit = await backend.sql<{ detail: { secrets: string[] } }>(
        "select detail from public.memory_audit_log where user_id = $1 and action = 'secret.decrypt_failed'",
        [frank.user.id],
      );
      expect(audit).toHaveLength(1);
      expect(audit[0]!.detail.secrets).toEqual(['API_KEY']);

      const keyless = withCipher(backend, undefined).forUser(frank.user);
      expect(await codeOf(() => keyless.saveSettings({ secrets: { X: 'y' } }))).toBe('ENCRYPTION_KEY_MISSING');
      expect(await codeOf(async () => keyless.revealSecrets((await keyless.getSettings())!))).toBe(
        'ENCRYPTION_KEY_MISSING',
      );
      // Config alone needs no key.
      expect((await keyless.saveSettings({ config: { voice: 'echo' } })).config.voice).toBe('echo');
    });

    it('rotation re-encrypts every secret under the new key and keeps each value readable', async () => {
      const backend = getBackend();
      const oldKey = randomBytes(32);
      const newKey = randomBytes(32);
      const before = withCipher(backend, new SecretCipher(oldKey));
      const users = await Promise.all(
        Array.from({ length: 5 }, async (_, i) =>
          before.forUser((await before.startSession(fresh(`rotate${i}`))).user),
        ),
      );
      for (const [i, u] of users.entries()) await u.saveSettings({ secrets: { A: `a-${i}`, B: `b-${i}` } });

      const after = withCipher(backend, new SecretCipher(newKey, [oldKey]));
      const report = await after.rotateSecrets();
      expect(report.failed.filter((f) => users.some((u) => u.user.id === f.userId))).toEqual([]);
      expect(report.rotated).toBeGreaterThanOrEqual(5);

      const onlyNew = withCipher(backend, new SecretCipher(newKey));
      for (const [i, u] of users.entries()) {
        const handle = onlyNew.forUser(u.user);
        const settings = (await handle.getSettings())!;
        expect(Object.values(settings.encryptedSecrets).every((s) => s.kid === onlyNew.encryptionKeyId)).toBe(true);
        expect(await handle.revealSecrets(settings)).toEqual({ A: `a-${i}`, B: `b-${i}` });
      }
    });

    it('rejects bad settings with typed errors and writes nothing', async () => {
      const backend = getBackend();
      const gina = await user('settings-gina');
      const cases: Array<[() => Promise<unknown>, MemoryErrorCode]> = [
        [() => gina.saveSettings({ config: { voice: '' } }), 'INVALID_SETTINGS'],
        [() => gina.saveSettings({ config: { unknownField: 1 } as never }), 'INVALID_SETTINGS'],
        [() => gina.saveSettings({ config: { language: 'not a tag' } }), 'INVALID_SETTINGS'],
        // Either case is a valid secret name (retell_api_key); a hyphen or a leading _ is not.
        [() => gina.saveSettings({ secrets: { 'kebab-case': 'x' } }), 'INVALID_SETTINGS'],
        [() => gina.saveSettings({ secrets: { _leading: 'x' } }), 'INVALID_SETTINGS'],
        [() => gina.saveSettings({ removeSecrets: 'AB' as never }), 'INVALID_SETTINGS'],
        [() => gina.saveSettings({ secrets: new Map([['A', 'x']]) as never }), 'INVALID_SETTINGS'],
        [() => gina.saveSettings({ secrets: { EMPTY: '' } }), 'INVALID_SETTINGS'],
        [() => gina.saveSettings({ secrets: { HUGE: 'x'.repeat(9000) } }), 'INVALID_SETTINGS'],
        [() => gina.saveSettings({ removeSecrets: ['bad name'] }), 'INVALID_SETTINGS'],
        [() => gina.saveSettings({ tenant: 'no spaces', config: {} }), 'INVALID_TENANT'],
        [() => gina.getSettings('../etc'), 'INVALID_TENANT'],
      ];
      for (const [run, code] of cases) expect(await codeOf(run)).toBe(code);
      expect(await backend.sql('select 1 from public.memory_settings where user_id = $1', [gina.user.id])).toEqual([]);
    });
  });
}
