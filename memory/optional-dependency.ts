import { MemoryError } from './errors.js';

/**
 * The backends' drivers are optional peer dependencies: a project installs only the one it uses
 * (`pg` for DATABASE_URL and for the job processes of an embedded database, `@electric-sql/pglite`
 * for the process that owns the embedded database, `@supabase/supabase-js` for SUPABASE_URL).
 * They are imported when a backend is opened, never when the package is.
 */
export type OptionalDependency = 'pg' | '@electric-sql/pglite' | '@supabase/supabase-js';

/** True when `error` says that the package `name` itself is not installed. */
export function isMissingModule(error: unknown, name: string): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') return false;
  // Only this package missing, not a file or dependency inside it.
  const message = String((error as Error).message);
  return message.includes(`'${name}'`) || message.includes(`"${name}"`) || message.includes(`${name}/`);
}

/**
 * Import one optional dependency for `purpose`; a package that is not installed becomes a
 * DEPENDENCY_MISSING error that names the package and the command that installs it.
 */
export async function importOptional<T>(name: OptionalDependency, purpose: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (error) {
    if (!isMissingModule(error, name)) throw error;
    throw new MemoryError(
      'DEPENDENCY_MISSING',
      `${purpose} needs the package ${name}, which is not installed: run \`npm install ${name}\` in your project ` +
        '(livekit-user-memory lists it as an optional peer dependency so that only the backend you use is installed)',
      { cause: error },
    );
  }
}
