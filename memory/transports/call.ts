import type { Queryable } from './transport.js';

/**
 * How a database function's result comes back: `value` for a function returning one value (a
 * scalar or jsonb), `rows` for one returning a set of rows.
 */
export type CallShape = 'value' | 'rows';

/** Marks an argument as jsonb: SQL transports cast it, PostgREST receives it as JSON. */
export class JsonArg {
  constructor(readonly value: unknown) {}
}

export const jsonArg = (value: unknown): JsonArg => new JsonArg(value);

export type CallArgs = Record<string, unknown>;

const IDENTIFIER = /^[a-z_][a-z0-9_]*$/;

/**
 * One database function call as one SQL statement with named arguments, the same call PostgREST
 * makes for `POST /rest/v1/rpc/<fn>`: so every backend runs exactly the same function.
 */
export async function callOverSql(db: Queryable, fn: string, args: CallArgs, shape: CallShape): Promise<unknown> {
  if (!IDENTIFIER.test(fn)) throw new Error(`invalid function name ${fn}`);
  const names = Object.keys(args);
  const params: unknown[] = [];
  const list = names.map((name, i) => {
    if (!IDENTIFIER.test(name)) throw new Error(`invalid argument name ${name}`);
    const value = args[name];
    if (value instanceof JsonArg) {
      params.push(JSON.stringify(value.value));
      return `${name} => $${i + 1}::jsonb`;
    }
    params.push(value);
    return `${name} => $${i + 1}`;
  });
  const call = `public.${fn}(${list.join(', ')})`;
  if (shape === 'rows') return db.query(`select * from ${call}`, params);
  const rows = await db.query<{ value: unknown }>(`select ${call} as value`, params);
  return rows[0]?.value ?? null;
}
