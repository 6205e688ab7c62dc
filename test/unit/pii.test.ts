import { describe, expect, it } from 'vitest';
import { AgentConfigError, loadWorkerConfig } from '../../agent/config.js';
import {
  MemoryError,
  REDACTION_MARKERS,
  cardNetwork,
  checkSensitive,
  isCredentialKey,
  luhnValid,
  piiSettings,
  piiSettingsFromEnv,
  redactSensitive,
  screenValue,
  type SensitiveKind,
} from '../../memory/index.js';

/**
 * Values the detector must find: [value, kind, the sensitive part (what must never survive
 * redaction), key (the memory's key, when the key is what makes it sensitive)].
 */
export const SENSITIVE: ReadonlyArray<{ value: string; kind: SensitiveKind; secret: string; key?: string }> = [
  { value: '4111 1111 1111 1111', kind: 'card', secret: '4111 1111 1111 1111' },
  { value: 'card 5555-5555-5555-4444 exp 04/28', kind: 'card', secret: '5555-5555-5555-4444' },
  { value: 'amex 378282246310005', kind: 'card', secret: '378282246310005' },
  { value: 'my discover is 6011111111111117.', kind: 'card', secret: '6011111111111117' },
  { value: 'JCB 3530 1113 3330 0000', kind: 'card', secret: '3530 1113 3330 0000' },
  { value: 'diners 30569309025904', kind: 'card', secret: '30569309025904' },
  { value: 'unionpay 6200000000000005', kind: 'card', secret: '6200000000000005' },
  { value: 'new mastercard 2223003122003222', kind: 'card', secret: '2223003122003222' },
  { value: 'SSN 123-45-6789', kind: 'national-id', secret: '123-45-6789' },
  { value: 'social security 078 05 1120', kind: 'national-id', secret: '078 05 1120' },
  { value: 'NI number AB123456C', kind: 'national-id', secret: 'AB123456C' },
  { value: 'national insurance: AB 12 34 56 C', kind: 'national-id', secret: 'AB 12 34 56 C' },
  {
    value: 'key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z',
    kind: 'credential',
    secret: 'Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z',
  },
  { value: 'aws AKIAIOSFODNN7EXAMPLE', kind: 'credential', secret: 'AKIAIOSFODNN7EXAMPLE' },
  { value: `token ghp_${'a1B2c3D4e5'.repeat(4)}`, kind: 'credential', secret: 'a1B2c3D4e5'.repeat(4) },
  {
    value: 'github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz',
    kind: 'credential',
    secret: '11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz',
  },
  { value: 'slack xoxb-123456789012-abcdefghijkl', kind: 'credential', secret: '123456789012-abcdefghijkl' },
  {
    value: `maps key AIzaSy${'B'.repeat(33)}`,
    kind: 'credential',
    secret: `Sy${'B'.repeat(33)}`,
  },
  { value: 'stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc', kind: 'credential', secret: '4eC39HqLyjWDarjtT1zdp7dc' },
  {
    value: 'jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
    kind: 'credential',
    secret: 'dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
  },
  {
    value: '-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAzq8Zb\n-----END RSA PRIVATE KEY-----',
    kind: 'credential',
    secret: 'MIIEowIBAAKCAQEAzq8Zb',
  },
  { value: 'my wifi password is hunter2!', kind: 'credential', secret: 'hunter2' },
  { value: 'the door PIN: 4921', kind: 'credential', secret: '4921' },
  { value: 'passcode = Tr0ub4dor&3', kind: 'credential', secret: 'Tr0ub4dor&3' },
  { value: 'the password for the router is "correcthorse"', kind: 'credential', secret: 'correcthorse' },
  { value: 'cvv 123', kind: 'credential', secret: '123' },
  { value: '4921', kind: 'credential', secret: '4921', key: 'bank_pin' },
  { value: 'zebra-lamp-42', kind: 'credential', secret: 'zebra-lamp-42', key: 'wifiPassword' },
  { value: 'abc123xyz789', kind: 'credential', secret: 'abc123xyz789', key: 'openai_api_key' },
];

/** Values that look like the above and must be stored: [value, key?, why]. */
export const HARMLESS: ReadonlyArray<{ value: string; key?: string; why: string }> = [
  { value: 'order 1234567890123452', why: 'Luhn-valid 16 digits, but no card network starts with 1' },
  { value: 'order number 4111111111111112', why: 'Visa-like, Luhn-invalid' },
  { value: '5555 5555 5555 4445', why: 'Mastercard-like, Luhn-invalid' },
  { value: 'ISBN 978-0-306-40615-7', why: 'ISBN-13 (978 prefix)' },
  { value: '9780306406157', why: 'ISBN-13 without dashes' },
  { value: 'tracking 1Z999AA10123456784', why: 'UPS tracking number' },
  { value: 'parcel 9400 1118 9922 3344 5566 77', why: 'USPS tracking: 22 digits, longer than any card' },
  { value: 'IMEI 490154203237518', why: 'Luhn-valid IMEI, 15 digits: not a Visa length' },
  { value: 'call me at +1 (555) 123-4567', why: 'phone number' },
  { value: 'office 555-123-4567', why: 'phone number: 3-3-4 is not the SSN shape' },
  { value: 'dentist appointment on 2024-03-15', why: 'date' },
  { value: 'born 15/03/1990', why: 'date' },
  { value: 'ticket 000-12-3456', why: 'SSN shape with area 000, never issued' },
  { value: 'ref 666-12-3456', why: 'SSN shape with area 666, never issued' },
  { value: 'booking 912-34-5678', why: 'SSN shape with area 9xx, never issued' },
  { value: 'customer 123456789', why: 'nine bare digits' },
  { value: 'my password is too short', why: 'about a password, no password in it' },
  { value: 'I changed my password yesterday', why: 'no "is": not a password given' },
  { value: 'the PIN is on the back of the card', why: 'a PIN is digits' },
  { value: 'sk-short', why: 'too short for an API key' },
  { value: 'flight LH1234 on 2024-05-01, seat 14C', why: 'flight number and seat' },
  { value: 'zip code 94103', why: 'postal code' },
  { value: 'garden_lover', key: 'pinterest_username', why: 'a key with "pin" inside a word' },
  { value: 'meeting 12:30-14:45 room 4111', why: 'times and a room number' },
  { value: 'QQ123456C', why: 'NINO shape with a prefix HMRC never issues (Q)' },
];

const settings = piiSettings();

describe('the sensitive data detector (memory/pii.ts)', () => {
  it(`finds each of the ${SENSITIVE.length} sensitive values, of the right kind`, () => {
    expect(SENSITIVE.length).toBeGreaterThanOrEqual(20);
    for (const { value, kind, key } of SENSITIVE) {
      const findings = checkSensitive(value, { settings, key });
      expect(
        findings.map((f) => f.kind),
        value,
      ).toEqual([kind]);
    }
  });

  it(`finds nothing in ${HARMLESS.length} harmless values that look similar`, () => {
    expect(HARMLESS.length).toBeGreaterThanOrEqual(20);
    for (const { value, key, why } of HARMLESS) {
      expect(checkSensitive(value, { settings, key }), `${value} (${why})`).toEqual([]);
    }
  });

  it('refuse: every sensitive value is refused, every harmless one stored as given', () => {
    for (const { value, key } of SENSITIVE) expect(screenValue(value, settings, key).action, value).toBe('refuse');
    for (const { value, key } of HARMLESS)
      expect(screenValue(value, settings, key)).toEqual({ action: 'store', value, findings: [] });
  });

  it('redact: only the sensitive span is replaced, with a marker naming its kind', () => {
    const redact = piiSettings({ policy: 'redact' });
    for (const { value, kind, secret, key } of SENSITIVE) {
      const screened = screenValue(value, redact, key);
      if (screened.action !== 'redact') throw new Error(`${value} was not redacted`);
      expect(screened.value).toContain(REDACTION_MARKERS[kind]);
      expect(screened.value).not.toContain(secret);
    }
    expect(screenValue('card 5555-5555-5555-4444 exp 04/28', redact)).toMatchObject({
      value: 'card [redacted card number] exp 04/28',
    });
    expect(screenValue('my wifi password is hunter2! and my SSN 123-45-6789', redact)).toMatchObject({
      value: 'my wifi password is [redacted credential]! and my SSN [redacted national id]',
    });
    for (const { value, key } of HARMLESS) expect(screenValue(value, redact, key).action).toBe('store');
  });

  it('allow: everything is stored as given', () => {
    const allow = piiSettings({ policy: 'allow' });
    for (const { value, key } of SENSITIVE)
      expect(screenValue(value, allow, key)).toEqual({ action: 'store', value, findings: [] });
  });

  it('findings carry no part of the value (they are logged)', () => {
    for (const { value, secret, key } of SENSITIVE) {
      expect(JSON.stringify(checkSensitive(value, { settings, key }))).not.toContain(secret);
    }
  });

  it('card rule: Luhn and an issuer prefix with its length; a run inside a longer digit run is no card', () => {
    expect(luhnValid('4111111111111111')).toBe(true);
    expect(luhnValid('1234567890123452')).toBe(true); // an order number a Luhn-only rule would refuse
    expect(cardNetwork('1234567890123452')).toBeUndefined();
    expect(cardNetwork('4111111111111111')).toBe('visa');
    expect(cardNetwork('378282246310005')).toBe('amex');
    expect(cardNetwork('37828224631000')).toBeUndefined(); // amex is 15 digits
    expect(checkSensitive('41111111111111110', { settings })).toEqual([]); // 17 digits: not a Visa length
    expect(checkSensitive('9 4111 1111 1111 1111', { settings })).toEqual([]); // part of a longer grouped run
    expect(redactSensitive('a 4111111111111111 b', checkSensitive('a 4111111111111111 b', { settings }))).toBe(
      'a [redacted card number] b',
    );
  });

  it('credential keys are matched on whole words of the key', () => {
    for (const key of ['wifi_password', 'bankPin', 'PIN', 'api_key', 'openai-api-key', 'client_secret', 'cvv'])
      expect(isCredentialKey(key), key).toBe(true);
    for (const key of ['pinterest', 'spinach_recipe', 'favorite_color', 'secret_santa', 'keyboard', 'passport_country'])
      expect(isCredentialKey(key), key).toBe(false);
  });
});

describe('PII configuration', () => {
  it('MEMORY_PII_POLICY and MEMORY_PII_NATIONAL_ID_PATTERN are read and checked', () => {
    expect(piiSettingsFromEnv({}).policy).toBe('refuse');
    expect(piiSettingsFromEnv({ MEMORY_PII_POLICY: 'redact' }).policy).toBe('redact');
    const custom = piiSettingsFromEnv({ MEMORY_PII_NATIONAL_ID_PATTERN: '\\b[A-Z]{2}-\\d{6}\\b' });
    expect(checkSensitive('id XY-123456', { settings: custom }).map((f) => f.kind)).toEqual(['national-id']);
    // The pattern replaces the defaults.
    expect(checkSensitive('SSN 123-45-6789', { settings: custom })).toEqual([]);
  });

  it('a bad policy, a pattern that is not a regular expression, or one matching the empty string: INVALID_CONFIG naming the variable', () => {
    const failure = (env: NodeJS.ProcessEnv) => {
      try {
        piiSettingsFromEnv(env);
      } catch (error) {
        return error;
      }
      throw new Error('expected a failure');
    };
    for (const env of [
      { MEMORY_PII_POLICY: 'block' },
      { MEMORY_PII_NATIONAL_ID_PATTERN: '([0-9' },
      { MEMORY_PII_NATIONAL_ID_PATTERN: '\\d*' },
    ]) {
      const error = failure(env);
      expect(error).toBeInstanceOf(MemoryError);
      expect((error as MemoryError).code).toBe('INVALID_CONFIG');
      expect((error as MemoryError).message).toContain(Object.keys(env)[0]);
    }
    expect(() => piiSettings({ nationalIdPatterns: ['(?:'] })).toThrow(MemoryError);
  });

  it('the worker refuses to start with a bad setting, naming it', () => {
    const base = { OPENAI_BASE_URL: 'http://127.0.0.1:9/v1' };
    expect(() => loadWorkerConfig({ ...base, MEMORY_PII_NATIONAL_ID_PATTERN: '([' })).toThrow(AgentConfigError);
    expect(() => loadWorkerConfig({ ...base, MEMORY_PII_NATIONAL_ID_PATTERN: '([' })).toThrow(
      /MEMORY_PII_NATIONAL_ID_PATTERN/,
    );
    expect(() => loadWorkerConfig({ ...base, MEMORY_PII_POLICY: 'maybe' })).toThrow(/MEMORY_PII_POLICY/);
    expect(() => loadWorkerConfig({ ...base, MEMORY_EXTRACT: 'yes' })).toThrow(/MEMORY_EXTRACT/);
    expect(() => loadWorkerConfig({ ...base, MEMORY_EXTRACT_TIMEOUT_MS: '90000' })).toThrow(
      /MEMORY_EXTRACT_TIMEOUT_MS/,
    );
    const config = loadWorkerConfig({ ...base, MEMORY_PII_POLICY: 'redact', MEMORY_EXTRACT: 'on' });
    expect(config.memory.pii.policy).toBe('redact');
    expect(config.memory.extract).toEqual({ timeoutMs: 15_000 });
    expect(loadWorkerConfig(base).memory.extract).toBeUndefined();
  });
});
