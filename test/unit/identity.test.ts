import { describe, expect, it } from 'vitest';
import { DNS_NAMESPACE, MAX_IDENTITY_BYTES, MemoryError, identityToUserId } from '../../memory/index.js';
import golden from '../fixtures/identity-uuid5.json' with { type: 'json' };
import custom from '../fixtures/identity-uuid5-custom-namespace.json' with { type: 'json' };

function codeOf(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    return error instanceof MemoryError ? error.code : `not a MemoryError: ${String(error)}`;
  }
  return undefined;
}

describe('identityToUserId', () => {
  it('matches Python uuid.uuid5(uuid.NAMESPACE_DNS, identity) for every golden vector', () => {
    expect(golden.namespace).toBe(DNS_NAMESPACE);
    expect(golden.vectors.length).toBeGreaterThanOrEqual(30);
    for (const { identity, user_id } of golden.vectors) {
      expect(identityToUserId(identity), JSON.stringify(identity)).toBe(user_id);
    }
  });

  it('matches Python for a configured namespace, given in either case', () => {
    for (const { identity, user_id } of custom.vectors) {
      expect(identityToUserId(identity, custom.namespace)).toBe(user_id);
      expect(identityToUserId(identity, custom.namespace.toUpperCase())).toBe(user_id);
      expect(identityToUserId(identity, custom.namespace)).not.toBe(identityToUserId(identity));
    }
  });

  it('does not normalise: case, spaces and Unicode forms are different users', () => {
    const ids = new Set(
      ['alice', 'Alice', ' alice', 'alice ', 'Jos\u00e9', 'Jose\u0301'].map((i) => identityToUserId(i)),
    );
    expect(ids.size).toBe(6);
  });

  it('is a version 5, RFC 9562 variant UUID', () => {
    expect(identityToUserId('someone')).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
  });

  it('accepts an identity of exactly the byte limit, multi-byte characters counted as bytes', () => {
    expect(codeOf(() => identityToUserId('x'.repeat(MAX_IDENTITY_BYTES)))).toBeUndefined();
    expect(codeOf(() => identityToUserId('é'.repeat(MAX_IDENTITY_BYTES / 2)))).toBeUndefined();
    expect(codeOf(() => identityToUserId('é'.repeat(MAX_IDENTITY_BYTES / 2) + 'x'))).toBe('INVALID_IDENTITY');
  });

  it('rejects what cannot be hashed faithfully, with typed errors', () => {
    const rejected: Array<[unknown, string]> = [
      ['', 'INVALID_IDENTITY'],
      ['x'.repeat(MAX_IDENTITY_BYTES + 1), 'INVALID_IDENTITY'],
      ['\ud800', 'INVALID_IDENTITY'],
      ['a\udc00b', 'INVALID_IDENTITY'],
      ['emoji half \ud83d', 'INVALID_IDENTITY'],
      ['nul\u0000', 'INVALID_IDENTITY'],
      [undefined, 'INVALID_IDENTITY'],
      [null, 'INVALID_IDENTITY'],
      [123, 'INVALID_IDENTITY'],
    ];
    for (const [identity, code] of rejected)
      expect(
        codeOf(() => identityToUserId(identity as string)),
        String(identity),
      ).toBe(code);
  });

  it('rejects a namespace that is not a UUID', () => {
    for (const namespace of [
      '',
      'dns',
      '6ba7b810-9dad-11d1-80b4-00c04fd430c',
      '6ba7b810-9dad-11d1-80b4-00c04fd430c8x',
      'zzzzzzzz-9dad-11d1-80b4-00c04fd430c8',
    ]) {
      expect(codeOf(() => identityToUserId('alice', namespace))).toBe('INVALID_NAMESPACE');
    }
  });
});
