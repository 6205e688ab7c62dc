import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { MemoryError } from '../errors.js';

/** How a secret is stored: AES-256-GCM ciphertext with the id of the key that made it. */
export interface EncryptedSecret {
  v: 1;
  /** Key id: the first 16 hex digits of SHA-256 over the key, so keys can rotate. */
  kid: string;
  iv: string;
  ct: string;
  tag: string;
  /** Write clock of the save that set it: the later write of one secret wins (see the migrations). */
  at?: string;
}

export const KEY_VARIABLE = 'MEMORY_ENCRYPTION_KEY';
export const PREVIOUS_KEYS_VARIABLE = 'MEMORY_ENCRYPTION_PREVIOUS_KEYS';

/** A 32-byte key given as 64 hex digits or as base64; anything else names the variable. */
export function parseKey(text: string, variable: string): Buffer {
  const trimmed = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(trimmed)
    ? Buffer.from(trimmed, 'hex')
    : /^[A-Za-z0-9+/_-]{43}=?$/.test(trimmed)
      ? Buffer.from(trimmed, 'base64')
      : Buffer.alloc(0);
  if (key.length !== 32) {
    throw new MemoryError(
      'ENCRYPTION_KEY_INVALID',
      `${variable} must be 32 random bytes as 64 hex digits or base64 (generate one with: openssl rand -base64 32)`,
    );
  }
  return key;
}

export function keyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}

export function isEncryptedSecret(value: unknown): value is EncryptedSecret {
  const v = value as EncryptedSecret;
  return (
    Boolean(v) &&
    v.v === 1 &&
    typeof v.kid === 'string' &&
    typeof v.iv === 'string' &&
    typeof v.ct === 'string' &&
    typeof v.tag === 'string'
  );
}

/**
 * Encrypts secrets under the current key and decrypts them under the current or a previous one.
 * The associated data binds each ciphertext to its user, tenant and name: a ciphertext copied to
 * another user's row (or renamed) fails to decrypt instead of leaking one user's secret to another.
 */
export class SecretCipher {
  readonly currentKeyId: string;
  readonly #keys: Map<string, Buffer>;
  readonly #current: Buffer;

  constructor(current: Buffer, previous: Buffer[] = []) {
    this.#current = current;
    this.currentKeyId = keyId(current);
    this.#keys = new Map([current, ...previous].map((key) => [keyId(key), key]));
  }

  /** From MEMORY_ENCRYPTION_KEY and MEMORY_ENCRYPTION_PREVIOUS_KEYS (comma-separated); undefined without a key. */
  static fromEnv(env: NodeJS.ProcessEnv): SecretCipher | undefined {
    const current = env[KEY_VARIABLE];
    if (!current) return undefined;
    const previous = (env[PREVIOUS_KEYS_VARIABLE] ?? '')
      .split(',')
      .map((k) => k.trim())
      .filter(Boolean)
      .map((k) => parseKey(k, PREVIOUS_KEYS_VARIABLE));
    return new SecretCipher(parseKey(current, KEY_VARIABLE), previous);
  }

  get knownKeyIds(): string[] {
    return [...this.#keys.keys()];
  }

  /**
   * HMAC-SHA256 of `message`, as hex, under a key derived (HKDF) from each known key for `purpose`,
   * the current key's first: values the database keeps that must not be computable from the
   * database alone (erasure markers, memory/erasure.ts). The encryption key itself is never used
   * for anything but encryption.
   */
  digests(purpose: string, message: string): string[] {
    return [this.#current, ...[...this.#keys.values()].filter((k) => k !== this.#current)].map((key) => {
      const derived = Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), `livekit-user-memory/${purpose}`, 32));
      return createHmac('sha256', derived).update(message, 'utf8').digest('hex');
    });
  }

  encrypt(plaintext: string, associatedData: string): EncryptedSecret {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#current, iv);
    cipher.setAAD(Buffer.from(associatedData, 'utf8'));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return {
      v: 1,
      kid: this.currentKeyId,
      iv: iv.toString('base64'),
      ct: ct.toString('base64'),
      tag: cipher.getAuthTag().toString('base64'),
    };
  }

  /** The plaintext; a typed error naming the variable when the key is unknown or wrong. Never the value. */
  decrypt(secret: EncryptedSecret, associatedData: string, name: string): string {
    const key = this.#keys.get(secret.kid);
    if (!key) {
      throw new MemoryError(
        'DECRYPTION_FAILED',
        `secret ${name} was encrypted with key ${secret.kid}, which is neither ${KEY_VARIABLE} (${this.currentKeyId}) nor in ${PREVIOUS_KEYS_VARIABLE}; set the key it was made with`,
      );
    }
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(secret.iv, 'base64'));
      decipher.setAAD(Buffer.from(associatedData, 'utf8'));
      decipher.setAuthTag(Buffer.from(secret.tag, 'base64'));
      return Buffer.concat([decipher.update(Buffer.from(secret.ct, 'base64')), decipher.final()]).toString('utf8');
    } catch (error) {
      throw new MemoryError(
        'DECRYPTION_FAILED',
        `secret ${name} failed authentication under key ${secret.kid}: it was altered, moved from another row, or ${KEY_VARIABLE} is wrong`,
        { cause: error },
      );
    }
  }
}

/** Associated data of a secret: who it belongs to and under which name. */
export function secretContext(userId: string, tenantId: string, name: string): string {
  return `livekit-user-memory/v1\u0000${userId}\u0000${tenantId}\u0000${name}`;
}
