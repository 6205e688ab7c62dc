import { type Command } from 'commander';
import {
  MEMORY_TABLES,
  SecretCipher,
  checkDatabaseUrl,
  isMemoryError,
  loadMemoryConfig,
  openMemory,
  redactText,
  secretsOf,
  type Diagnostics,
  type MemoryStore,
} from '../../memory/index.js';
import { say, type CliIo, type GlobalOptions, type Outcome } from './context.js';
import { EXIT } from './exit-codes.js';

type Status = 'ok' | 'warn' | 'FAIL' | 'skip';
interface Check {
  name: string;
  status: Status;
  detail: string;
}

const LEGACY_FK_HELP =
  'a foreign key from a public table to auth.users refuses every caller who never signed up through Supabase Auth ' +
  '(SIP callers, LiveKit identities): provisioning then fails, and code that falls back to one shared user id makes ' +
  'every caller hear the same memories. livekit-user-memory keeps its users in public.memory_users with no such key; ' +
  'copy what you need from the old table (insert into public.memory_users (id, identity) select ...) and drop the ' +
  'constraint: alter table public.<table> drop constraint <constraint>';

function databaseChecks(d: Diagnostics, location: string): Check[] {
  const checks: Check[] = [];
  checks.push(
    !d.schemaVersion
      ? {
          name: 'migrations',
          status: 'FAIL',
          detail: `no livekit-user-memory schema: run \`lk-memory migrate\` (or \`supabase db push\`), needs ${d.expectedVersion}`,
        }
      : d.schemaVersion < d.expectedVersion
        ? {
            name: 'migrations',
            status: 'FAIL',
            detail: `schema at ${d.schemaVersion}, this version needs ${d.expectedVersion}: run \`lk-memory migrate\` (or \`supabase db push\`)`,
          }
        : { name: 'migrations', status: 'ok', detail: `schema at ${d.schemaVersion}` },
  );
  checks.push(
    d.authForeignKeys.length === 0
      ? { name: 'legacy auth.users keys', status: 'ok', detail: 'no public table references auth.users' }
      : {
          name: 'legacy auth.users keys',
          status: 'FAIL',
          detail: `${d.authForeignKeys.map((k) => `public.${k.table} (${k.constraint})`).join(', ')} references auth.users: ${LEGACY_FK_HELP}`,
        },
  );
  // d.rls holds MEMORY_TABLES and any other table of ours the database has (a newer schema's).
  const tables = [...new Set([...MEMORY_TABLES, ...Object.keys(d.rls)])];
  const missing = tables.filter((t) => !d.rls[t]);
  checks.push(
    missing.length === 0
      ? { name: 'row level security', status: 'ok', detail: `enabled on ${tables.join(', ')}` }
      : {
          name: 'row level security',
          status: 'FAIL',
          detail: `not enabled (or table missing) on ${missing.join(', ')}: apply the migrations`,
        },
  );
  checks.push(
    d.schemaCache === 'not-applicable'
      ? { name: 'schema cache', status: 'skip', detail: `not Supabase (${location})` }
      : d.schemaCache === 'ok'
        ? { name: 'schema cache', status: 'ok', detail: 'PostgREST knows the memory functions' }
        : {
            name: 'schema cache',
            status: 'FAIL',
            detail:
              "PostgREST does not know the memory functions: apply the migrations, then run NOTIFY pgrst, 'reload schema'",
          },
  );
  return checks;
}

/** Vectors for the optional embeddings: what the database has, and what MEMORY_EMBEDDING_MODEL asks for. */
function vectorCheck(env: NodeJS.ProcessEnv, d: Diagnostics | undefined): Check {
  const model = env.MEMORY_EMBEDDING_MODEL || undefined;
  const v = d?.vectors;
  if (!v) {
    return {
      name: 'vectors',
      status: model ? 'warn' : 'skip',
      detail: `unknown (the schema has no embeddings migration: run \`lk-memory migrate\`)${model ? `; MEMORY_EMBEDDING_MODEL=${model} is set, search stays lexical until then` : ''}`,
    };
  }
  if (model && !env.OPENAI_API_KEY && !env.OPENAI_BASE_URL) {
    return {
      name: 'vectors',
      status: 'FAIL',
      detail: `MEMORY_EMBEDDING_MODEL=${model} is set but neither OPENAI_API_KEY nor OPENAI_BASE_URL is: set the key (OpenAI) or the base URL of an OpenAI-compatible server`,
    };
  }
  if (v.available) {
    return model
      ? {
          name: 'vectors',
          status: 'ok',
          detail: `pgvector ${v.version} available: memories are embedded with ${model} into public.memory_embeddings, and search fuses vector similarity with the lexical ranking`,
        }
      : {
          name: 'vectors',
          status: 'skip',
          detail: `pgvector ${v.version} available; embeddings are off (set MEMORY_EMBEDDING_MODEL to use them), search is lexical`,
        };
  }
  return model
    ? {
        name: 'vectors',
        status: 'warn',
        detail: `MEMORY_EMBEDDING_MODEL=${model} is set but vectors are not available, so search stays lexical: ${v.reason}`,
      }
    : {
        name: 'vectors',
        status: 'skip',
        detail: 'no pgvector on this database; search is lexical (MEMORY_EMBEDDING_MODEL is unset)',
      };
}

function keyCheck(env: NodeJS.ProcessEnv, d: Diagnostics | undefined): Check {
  let cipher: SecretCipher | undefined;
  try {
    cipher = SecretCipher.fromEnv(env);
  } catch (error) {
    return { name: 'encryption key', status: 'FAIL', detail: (error as Error).message };
  }
  const byKey = d?.secretsByKeyId ?? {};
  const total = Object.values(byKey).reduce((a, b) => a + b, 0);
  if (!cipher) {
    return total > 0
      ? {
          name: 'encryption key',
          status: 'FAIL',
          detail: `MEMORY_ENCRYPTION_KEY is not set but ${total} secret(s) are stored: set the key they were made with`,
        }
      : {
          name: 'encryption key',
          status: 'warn',
          detail: 'MEMORY_ENCRYPTION_KEY is not set: settings secrets cannot be saved (openssl rand -base64 32)',
        };
  }
  const unknown = Object.entries(byKey).filter(([kid]) => !cipher.knownKeyIds.includes(kid));
  if (unknown.length > 0) {
    return {
      name: 'encryption key',
      status: 'FAIL',
      detail: `${unknown.map(([kid, n]) => `${n} secret(s) under key ${kid}`).join(', ')} cannot be read with MEMORY_ENCRYPTION_KEY (${cipher.currentKeyId}) or MEMORY_ENCRYPTION_PREVIOUS_KEYS`,
    };
  }
  const old = Object.entries(byKey).filter(([kid]) => kid !== cipher.currentKeyId);
  return old.length > 0
    ? {
        name: 'encryption key',
        status: 'warn',
        detail: `key ${cipher.currentKeyId}; ${old.map(([, n]) => n).reduce((a, b) => a + b, 0)} secret(s) still under a previous key: run \`lk-memory rotate-key\``,
      }
    : { name: 'encryption key', status: 'ok', detail: `key ${cipher.currentKeyId}, ${total} secret(s) stored` };
}

async function livekitCheck(env: NodeJS.ProcessEnv): Promise<Check> {
  const url = env.LIVEKIT_URL || 'ws://127.0.0.1:7880';
  const httpUrl = url.replace(/^ws/, 'http');
  try {
    // livekit-server-sdk comes with @livekit/agents; it is loaded only for this check.
    const { RoomServiceClient } = await import('livekit-server-sdk');
    const client = new RoomServiceClient(httpUrl, env.LIVEKIT_API_KEY || 'devkey', env.LIVEKIT_API_SECRET || 'secret', {
      requestTimeout: 5,
    });
    const rooms = await client.listRooms();
    return { name: 'livekit', status: 'ok', detail: `${url}: credentials accepted, ${rooms.length} room(s) open` };
  } catch (error) {
    return {
      name: 'livekit',
      status: 'FAIL',
      detail: `${url}: ${(error as Error).message || String(error)} (check LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET; locally: npm run livekit)`,
    };
  }
}

export function registerDoctor(program: Command, io: CliIo, outcome: Outcome): void {
  program
    .command('doctor')
    .description(
      'check the database, migrations, legacy auth.users keys, row level security, the schema cache (Supabase), vectors for embeddings (pgvector), the encryption key and the LiveKit credentials; exits 1 when any check fails',
    )
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }, command: Command) => {
      const globals = command.optsWithGlobals<GlobalOptions>();
      const checks: Check[] = [];
      let memory: MemoryStore | undefined;
      let diagnostics: Diagnostics | undefined;
      try {
        if (globals.databaseUrl) checkDatabaseUrl(globals.databaseUrl, '--database-url');
        // migrate: false: the doctor describes the database as it is; it never changes it.
        memory = await openMemory({
          env: io.env,
          databaseUrl: globals.databaseUrl,
          dataDir: globals.dataDir,
          migrate: false,
          serve: false,
          // The doctor only asks the database about vectors; it embeds nothing.
          embeddings: false,
          maxConnections: 1,
          component: 'cli',
        });
        diagnostics = await memory.diagnostics();
        checks.push({ name: 'database', status: 'ok', detail: `${memory.backend.location} answers` });
        checks.push(...databaseChecks(diagnostics, memory.backend.location));
      } catch (error) {
        const config = (() => {
          try {
            return loadMemoryConfig(io.env);
          } catch {
            return undefined;
          }
        })();
        checks.push({
          name: 'database',
          status: 'FAIL',
          detail: `${isMemoryError(error) ? `${error.code}: ` : ''}${(error as Error).message}${config ? '' : ' (fix the configuration first)'}`,
        });
      } finally {
        await memory?.close();
      }
      checks.push(vectorCheck(io.env, diagnostics));
      checks.push(keyCheck(io.env, diagnostics));
      checks.push(await livekitCheck(io.env));

      // Details quote URLs and driver messages: no credential of the environment or of
      // --database-url may show, in text or JSON.
      const secrets = secretsOf(io.env, [globals.databaseUrl]);
      for (const c of checks) c.detail = redactText(c.detail, secrets);
      if (options.json) io.stdout(`${JSON.stringify(checks, null, 2)}\n`);
      else for (const c of checks) say(io, `${c.status.padEnd(4)}  ${c.name.padEnd(22)}  ${c.detail}\n`);
      if (checks.some((c) => c.status === 'FAIL')) outcome.code = EXIT.CHECKS_FAILED;
    });
}
