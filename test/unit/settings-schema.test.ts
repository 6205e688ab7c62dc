import { describe, expect, it } from 'vitest';
import { checkConfig, checkSecretNames, checkSecrets } from '../../memory/index.js';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (error) {
    return `${(error as { code?: string }).code}: ${(error as Error).message}`;
  }
}

describe('settings input is type-checked before the database', () => {
  it('removeSecrets must be an array of strings (a string is not iterated letter by letter)', () => {
    expect(code(() => checkSecretNames('AB'))).toMatch(/^INVALID_SETTINGS: removeSecrets must be an array/);
    expect(code(() => checkSecretNames(['A', 1]))).toMatch(
      /^INVALID_SETTINGS: removeSecrets: a secret name must be a string \(got a number\)/,
    );
    expect(checkSecretNames(['A', 'b_c'])).toEqual(['A', 'b_c']);
  });

  it('secrets must be a plain object of strings (a Map would save nothing)', () => {
    expect(code(() => checkSecrets(new Map([['A', 'x']])))).toMatch(
      /^INVALID_SETTINGS: secrets must be a plain object .*got a Map/,
    );
    expect(code(() => checkSecrets([]))).toMatch(/got an array/);
    expect(code(() => checkSecrets({ A: 1 }))).toMatch(/secrets.A must be a string \(got a number\)/);
    expect(code(() => checkSecrets({ A: { nested: 'x' } }))).toMatch(/secrets.A must be a string \(got an object\)/);
    expect(checkSecrets(Object.assign(Object.create(null), { A: 'x' }))).toEqual({ A: 'x' });
  });

  it('config must be a plain object', () => {
    class Config {
      voice = 'alloy';
    }
    for (const value of [new Map(), new Date(), new Config(), [], null, 'x'])
      expect(code(() => checkConfig(value))).toMatch(/^INVALID_SETTINGS: config must be a plain object/);
    expect(code(() => checkConfig(JSON.parse('{"externalAgentIds":{"__proto__":"x"}}')))).toMatch(
      /"__proto__" is not allowed/,
    );
    expect(checkConfig({ voice: 'alloy' })).toEqual({ voice: 'alloy' });
  });

  it('secret names: letters, digits and _ in either case, first a letter, up to 64', () => {
    for (const name of ['retell_api_key', 'call_agent_id', 'sms_agent_id', 'API_KEY', 'a', `A${'b'.repeat(63)}`])
      expect(checkSecrets({ [name]: 'v' })).toEqual({ [name]: 'v' });
    for (const name of [
      'api-key',
      'api.key',
      'api key',
      '',
      `A${'b'.repeat(64)}`,
      '__proto__',
      '_x',
      '1abc',
      'constructor',
      'prototype',
    ]) {
      expect(
        code(() => checkSecretNames([name])),
        name,
      ).toMatch(/^INVALID_SETTINGS: /);
    }
  });
});
