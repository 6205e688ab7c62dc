import { v5 as uuidv5, validate as isUuid } from 'uuid';
import { MemoryError } from './errors.js';

/** RFC 9562 DNS namespace, the one Python's `uuid.NAMESPACE_DNS` names. */
export const DNS_NAMESPACE = '6ba7b810-9dad-11d1-80b4-00c04fd430c8';

/**
 * Longest identity accepted, in UTF-8 bytes. LiveKit identities are JWT `sub` claims and SIP
 * numbers, far shorter; the cap keeps a hostile or broken client from making us hash and store
 * megabytes per row.
 */
export const MAX_IDENTITY_BYTES = 1024;

const utf8 = new TextEncoder();

/**
 * Check an identity and return its UTF-8 bytes. No normalisation: `Alice` and `alice` are two
 * users, as in Python's uuid5 over the same string. Rejects what cannot be hashed or stored
 * faithfully: empty strings, lone surrogates (they have no UTF-8 form, and a silent U+FFFD
 * replacement would merge distinct identities), NUL (PostgreSQL text cannot hold it) and anything
 * over MAX_IDENTITY_BYTES.
 */
export function identityBytes(identity: unknown): Uint8Array {
  if (typeof identity !== 'string') {
    throw new MemoryError('INVALID_IDENTITY', `identity must be a string, got ${typeof identity}`);
  }
  if (identity.length === 0) {
    throw new MemoryError('INVALID_IDENTITY', 'identity is empty: pass the participant identity (LiveKit JWT sub)');
  }
  if (!identity.isWellFormed()) {
    throw new MemoryError(
      'INVALID_IDENTITY',
      'identity is not valid UTF-16 (it holds a lone surrogate), so it has no UTF-8 form to hash',
    );
  }
  if (identity.includes('\u0000')) {
    throw new MemoryError('INVALID_IDENTITY', 'identity contains a NUL character, which PostgreSQL text cannot store');
  }
  const bytes = utf8.encode(identity);
  if (bytes.length > MAX_IDENTITY_BYTES) {
    throw new MemoryError(
      'INVALID_IDENTITY',
      `identity is ${bytes.length} UTF-8 bytes; the limit is ${MAX_IDENTITY_BYTES}`,
    );
  }
  return bytes;
}

/** Validate a namespace UUID and return it in canonical lower-case form. */
export function parseNamespace(namespace: unknown): string {
  if (typeof namespace !== 'string' || !isUuid(namespace)) {
    throw new MemoryError(
      'INVALID_NAMESPACE',
      `namespace ${JSON.stringify(namespace)} is not a UUID (expected e.g. ${DNS_NAMESPACE}); check MEMORY_UUID_NAMESPACE`,
    );
  }
  return namespace.toLowerCase();
}

/**
 * The user id for a participant identity: UUIDv5 over the identity's UTF-8 bytes, equal to
 * Python's `uuid.uuid5(uuid.NAMESPACE_DNS, identity)` with the default namespace.
 */
export function identityToUserId(identity: string, namespace: string = DNS_NAMESPACE): string {
  return uuidv5(identityBytes(identity), parseNamespace(namespace));
}
