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
} from '../../memory/index.js';
import { HARMLESS, SENSITIVE } from '../support/pii-values.js';

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
