import { describe, expect, it } from 'vitest';
import {
  checkDatabaseUrl,
  databaseUrlProblem,
  isMemoryError,
  loadMemoryConfig,
  openMemory,
  redactText,
  redactUrl,
  secretsOf,
} from '../../memory/index.js';

describe('redactUrl', () => {
  it.each([
    ['postgres://u@h/db?password=secret', 'postgres://u@h/db?password=***'],
    ['postgres://u:secret@h:5432/db', 'postgres://u:***@h:5432/db'],
    [
      'postgres://u:secret@h/db?sslmode=require&sslpassword=secret&sslkey=/k.pem',
      'postgres://u:***@h/db?sslmode=require&sslpassword=***&sslkey=/k.pem',
    ],
    ['https://p.supabase.co/rest/v1?apikey=secret&select=*', 'https://p.supabase.co/rest/v1?apikey=***&select=*'],
    [
      'https://h/x?access_token=secret&api_key=secret&token=secret&service_role=secret',
      'https://h/x?access_token=***&api_key=***&token=***&service_role=***',
    ],
    ['https://h/x?DB_Password=secret&x-api-key=secret', 'https://h/x?DB_Password=***&x-api-key=***'],
    ['postgres://[::1', 'postgres://(unparseable URL, not shown)'],
  ])('%s', (url, expected) => {
    expect(redactUrl(url)).toBe(expected);
    expect(redactUrl(url)).not.toContain('secret');
  });
});

describe('redactText', () => {
  it('redacts URLs inside messages, keyword/value pairs, Supabase keys and known values', () => {
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJl';
    const text = redactText(
      `connect failed: postgres://u:pw1@h/db?password=pw2: refused; host=h password=pw3 key ${jwt} sb_secret_abcdefgh123 and hunter22`,
      ['hunter22'],
    );
    for (const secret of ['pw1', 'pw2', 'pw3', jwt, 'sb_secret_abcdefgh123', 'hunter22'])
      expect(text).not.toContain(secret);
    expect(text).toContain('postgres://u:***@h/db?password=***: refused');
  });

  it('finds the secrets an environment holds, including inside an unparseable DATABASE_URL', () => {
    const secrets = secretsOf({
      DATABASE_URL: 'postgres://user:pa ss@host:notaport/db',
      SUPABASE_SERVICE_ROLE_KEY: 'service-role-key-123',
    });
    expect(secrets).toEqual(expect.arrayContaining(['pa ss', 'service-role-key-123']));
    expect(redactText('oops pa ss here', secrets)).toBe('oops *** here');
  });
});

describe('DATABASE_URL is parsed, not prefix-matched', () => {
  const bad = [
    ['postgres://user:pa ss@host:notaport/db', /space/],
    ['postgres://[::1', /closing \]/],
    ['postgres://u@h:notaport/db', /port/],
    ['postgres://u@h:70000/db', /port/],
    ['postgres://u@h:0/db', /port/],
    ['postgres://u:100%@h/db', /%25/],
    ['mysql://u@h/db', /postgres:\/\//],
  ] as const;
  it.each(bad)(
    '%s is INVALID_CONFIG naming DATABASE_URL (env) or databaseUrl (option), without the password',
    async (url, why) => {
      expect(databaseUrlProblem(url)).toMatch(why);
      let error: unknown;
      try {
        loadMemoryConfig({ DATABASE_URL: url });
      } catch (e) {
        error = e;
      }
      expect(isMemoryError(error, 'INVALID_CONFIG')).toBe(true);
      expect((error as Error).message).toMatch(/^DATABASE_URL /);
      expect((error as Error).message).not.toContain('pa ss');
      await expect(openMemory({ env: {}, databaseUrl: url })).rejects.toMatchObject({
        code: 'INVALID_CONFIG',
        message: expect.stringMatching(/^databaseUrl /),
      });
    },
  );

  it('accepts the forms libpq accepts', () => {
    for (const url of [
      'postgres://u@h/db',
      'postgresql://u:p%40ss@h:5432/db?sslmode=require',
      'postgres:///db?host=/var/run/postgresql',
      'postgres://u@[::1]:5432/db',
    ]) {
      expect(checkDatabaseUrl(url, 'DATABASE_URL')).toBe(url);
    }
  });
});
