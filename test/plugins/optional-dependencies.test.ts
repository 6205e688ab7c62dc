import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, cleanEnv, runTs } from '../support/processes.js';
import { tempDataDir } from '../support/backends.js';

/**
 * The backends' drivers are optional peers: the package imports without them, and opening a
 * backend whose driver is missing fails with DEPENDENCY_MISSING naming the package to install.
 * The packages are hidden from import() in a fresh process, as if never installed.
 */
async function openWithout(hidden: string, options: string): Promise<{ code: string; message: string }> {
  const script = 'test/support/open-memory-json.ts';
  const result = await runTs(script, [options], cleanEnv({ HIDE_PACKAGES: hidden }), [
    '--import',
    path.join(ROOT, 'test/support/hide-packages.mjs'),
  ]);
  expect(result.stderr).toBe('');
  return JSON.parse(result.stdout) as { code: string; message: string };
}

describe('optional peer dependencies', () => {
  it('PostgreSQL without pg: DEPENDENCY_MISSING, naming pg', async () => {
    const answer = await openWithout('pg', JSON.stringify({ databaseUrl: 'postgres://127.0.0.1:1/none' }));
    expect(answer.code).toBe('DEPENDENCY_MISSING');
    expect(answer.message).toContain('npm install pg');
  });

  it('the embedded database without PGlite: DEPENDENCY_MISSING, naming @electric-sql/pglite', async () => {
    const answer = await openWithout('@electric-sql/pglite', JSON.stringify({ dataDir: tempDataDir('nopglite') }));
    expect(answer.code).toBe('DEPENDENCY_MISSING');
    expect(answer.message).toContain('npm install @electric-sql/pglite');
  });

  it('Supabase without supabase-js: DEPENDENCY_MISSING, naming @supabase/supabase-js', async () => {
    const answer = await openWithout(
      '@supabase/supabase-js',
      JSON.stringify({ supabase: { url: 'http://127.0.0.1:1', serviceRoleKey: 'x' } }),
    );
    expect(answer.code).toBe('DEPENDENCY_MISSING');
    expect(answer.message).toContain('npm install @supabase/supabase-js');
  });
});
