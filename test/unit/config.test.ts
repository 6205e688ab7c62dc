import { describe, expect, it } from 'vitest';
import { DNS_NAMESPACE, MemoryError, loadMemoryConfig } from '../../memory/index.js';

describe('loadMemoryConfig', () => {
  it('defaults to the embedded database in .data with the DNS namespace and 16 KiB values', () => {
    expect(loadMemoryConfig({})).toEqual({
      databaseUrl: undefined,
      dataDir: '.data',
      namespace: DNS_NAMESPACE,
      maxValueBytes: 16384,
      tenant: 'default',
      supabase: undefined,
      lifecycle: { consentDefault: 'granted', retentionDays: null, maxPerUser: null, purgeIntervalMs: 3_600_000 },
    });
    expect(loadMemoryConfig({ DATABASE_URL: '', MEMORY_DATA_DIR: '' }).databaseUrl).toBeUndefined();
  });

  it('reads every variable', () => {
    const config = loadMemoryConfig({
      DATABASE_URL: 'postgresql://u:p@db:5432/app',
      MEMORY_DATA_DIR: '/var/lib/memory',
      MEMORY_UUID_NAMESPACE: '3F2A1C9E-8D4B-4E6F-9A7C-1B2D3E4F5A6B',
      MEMORY_MAX_VALUE_BYTES: '4096',
      MEMORY_CONSENT_DEFAULT: 'ask',
      MEMORY_RETENTION_DAYS: '90',
      MEMORY_MAX_PER_USER: '500',
      MEMORY_PURGE_INTERVAL_MS: '0',
    });
    expect(config).toEqual({
      databaseUrl: 'postgresql://u:p@db:5432/app',
      dataDir: '/var/lib/memory',
      namespace: '3f2a1c9e-8d4b-4e6f-9a7c-1b2d3e4f5a6b',
      maxValueBytes: 4096,
      tenant: 'default',
      supabase: undefined,
      lifecycle: { consentDefault: 'ask', retentionDays: 90, maxPerUser: 500, purgeIntervalMs: 0 },
    });
  });

  it('names the variable that is wrong', () => {
    for (const [name, value] of [
      ['DATABASE_URL', 'mysql://x'],
      ['MEMORY_UUID_NAMESPACE', 'not-a-uuid'],
      ['MEMORY_MAX_VALUE_BYTES', 'lots'],
      ['MEMORY_MAX_VALUE_BYTES', '0'],
      ['MEMORY_TENANT', 'has space'],
      ['SUPABASE_URL', 'not a url'],
      ['SUPABASE_SERVICE_ROLE_KEY', 'only-the-key-without-the-url'],
      ['MEMORY_CONSENT_DEFAULT', 'yes'],
      ['MEMORY_RETENTION_DAYS', '0'],
      ['MEMORY_RETENTION_DAYS', '1.5'],
      ['MEMORY_RETENTION_DAYS', 'forever'],
      ['MEMORY_MAX_PER_USER', '-1'],
      ['MEMORY_MAX_PER_USER', 'lots'],
      ['MEMORY_PURGE_INTERVAL_MS', '-5'],
    ] as const) {
      let error: unknown;
      try {
        loadMemoryConfig({ [name]: value });
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(MemoryError);
      expect((error as MemoryError).code).toBe('INVALID_CONFIG');
      expect((error as MemoryError).message).toContain(name);
    }
  });
});
