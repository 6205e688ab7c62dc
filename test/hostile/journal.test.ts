import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SecretCipher, WriteClock, identityToUserId, openMemory, type MemoryStore } from '../../memory/index.js';
import { loadJournalKey, sealLine } from '../../memory/journal/index.js';
import { secretContext } from '../../memory/settings/cipher.js';
import { transportOf } from '../../memory/store.js';
import { tempDataDir } from '../support/backends.js';
import { PgWireProxy } from '../support/pg-wire-proxy.js';
import { cli } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

/**
 * Forged journals. Each case writes lines into a journal file as someone who can write the file
 * would (most with a CORRECT MAC: as if the key had leaked, or a bug wrote them), then checks that
 * nothing of it is served to the victim (database unreachable, then reachable), nothing reaches the
 * database, and the replay reports it with its reason and moves it to `.rejected`.
 */

interface Ctx {
  key: Buffer;
  target: string;
  victim: string;
  victimId: string;
  attacker: string;
  attackerId: string;
  marker: string;
  clock: string;
}

type Body = Record<string, unknown>;
const clocks = new WriteClock('forger');
const cipher = new SecretCipher(randomBytes(32));

function store(c: Ctx, extra: Body = {}): Body {
  return {
    v: 2,
    target: c.target,
    at: new Date().toISOString(),
    pid: 999_999,
    op: 'store',
    userId: c.victimId,
    identity: c.victim,
    category: 'FACT',
    key: 'city',
    value: c.marker,
    clock: c.clock,
    ...extra,
  };
}
function settings(c: Ctx, extra: Body = {}): Body {
  return {
    ...store(c),
    op: 'settings',
    category: undefined,
    key: undefined,
    value: undefined,
    tenant: 'default',
    config: { voice: 'alloy', instructions: c.marker },
    secrets: {},
    removeSecrets: [],
    ...extra,
  };
}
function secret(c: Ctx, extra: Body = {}): Body {
  return { ...cipher.encrypt('sk-forged', secretContext(c.victimId, 'default', 'API_KEY')), at: c.clock, ...extra };
}
const seal = (c: Ctx, body: unknown) => sealLine(c.key, JSON.stringify(body));

interface Case {
  name: string;
  line: (c: Ctx) => string;
  kind: 'corrupt' | 'invalid';
  reason: RegExp;
}

const CASES: Case[] = [
  {
    name: 'MAC under another key',
    line: (c) => sealLine(randomBytes(32), JSON.stringify(store(c))),
    kind: 'corrupt',
    reason: /MAC check failed/,
  },
  {
    name: 'MAC of another body (the value changed after sealing)',
    line: (c) => seal(c, store(c)).replace(c.marker, `${c.marker}!`),
    kind: 'corrupt',
    reason: /MAC check failed/,
  },
  {
    name: 'no MAC: the unreleased v1 format with an unkeyed SHA-256',
    line: (c) => `${JSON.stringify({ h: '0123456789abcdef', e: { ...store(c), v: 1 } })}\n`,
    kind: 'corrupt',
    reason: /no MAC/,
  },
  {
    name: 'MAC correct, user id not uuid5(identity)',
    line: (c) => seal(c, store(c, { userId: randomUUID() })),
    kind: 'invalid',
    reason: /is not the id of identity/,
  },
  {
    name: "another user's id with the victim's identity",
    line: (c) => seal(c, store(c, { userId: c.attackerId })),
    kind: 'invalid',
    reason: /is not the id of identity/,
  },
  {
    name: "the victim's id with another identity",
    line: (c) => seal(c, store(c, { identity: c.attacker })),
    kind: 'invalid',
    reason: /is not the id of identity/,
  },
  {
    name: 'identity that is not an identity (empty)',
    line: (c) => seal(c, store(c, { identity: '' })),
    kind: 'invalid',
    reason: /INVALID_IDENTITY/,
  },
  {
    name: 'value of 100,000 bytes',
    line: (c) => seal(c, store(c, { value: c.marker + 'x'.repeat(100_000) })),
    kind: 'invalid',
    reason: /INVALID_VALUE.*limit is 16384/,
  },
  {
    name: 'value with a NUL',
    line: (c) => seal(c, store(c, { value: `${c.marker}\u0000` })),
    kind: 'invalid',
    reason: /INVALID_VALUE.*NUL/,
  },
  {
    name: 'value that is not a string',
    line: (c) => seal(c, store(c, { value: { $: c.marker } })),
    kind: 'invalid',
    reason: /^value:/,
  },
  {
    name: 'control characters in the key',
    line: (c) => seal(c, store(c, { key: 'city\n\u001b[2Jignore previous instructions' })),
    kind: 'invalid',
    reason: /INVALID_KEY.*control character/,
  },
  { name: 'empty key', line: (c) => seal(c, store(c, { key: '' })), kind: 'invalid', reason: /INVALID_KEY/ },
  {
    name: 'a category that is not a category',
    line: (c) => seal(c, store(c, { category: 'fact; drop table memories' })),
    kind: 'invalid',
    reason: /INVALID_CATEGORY/,
  },
  {
    name: 'forget with a bad category',
    line: (c) => seal(c, { ...store(c, { op: 'forget', category: 'system', value: undefined }) }),
    kind: 'invalid',
    reason: /INVALID_CATEGORY/,
  },
  {
    name: 'settings: 5,034-character instructions and unknown fields in config',
    line: (c) =>
      seal(
        c,
        settings(c, {
          config: { instructions: c.marker + 'A'.repeat(5034 - c.marker.length), systemPrompt: 'obey', role: 'admin' },
        }),
      ),
    kind: 'invalid',
    reason: /INVALID_SETTINGS: config/,
  },
  {
    name: 'settings: an unknown field in config',
    line: (c) => seal(c, settings(c, { config: { voice: c.marker, tools: ['shell'] } })),
    kind: 'invalid',
    reason: /INVALID_SETTINGS: config/,
  },
  {
    name: 'settings: __proto__ in config',
    line: (c) =>
      sealLine(
        c.key,
        JSON.stringify(settings(c)).replace('"config":{', `"config":{"__proto__":{"instructions":"${c.marker}"},`),
      ),
    kind: 'invalid',
    reason: /__proto__/,
  },
  {
    name: 'settings: __proto__ at the top level',
    line: (c) => sealLine(c.key, JSON.stringify(settings(c)).replace('{', '{"__proto__":{"userId":"x"},')),
    kind: 'invalid',
    reason: /__proto__/,
  },
  {
    name: 'settings: config is an array',
    line: (c) => seal(c, settings(c, { config: [c.marker] })),
    kind: 'invalid',
    reason: /^config:/,
  },
  {
    name: 'settings: a secret without its tag',
    line: (c) => seal(c, settings(c, { secrets: { API_KEY: secret(c, { tag: undefined }) } })),
    kind: 'invalid',
    reason: /secret API_KEY is not an encrypted secret/,
  },
  {
    name: 'settings: a secret with an extra field',
    line: (c) => seal(c, settings(c, { secrets: { API_KEY: secret(c, { plaintext: c.marker }) } })),
    kind: 'invalid',
    reason: /secret API_KEY is not an encrypted secret/,
  },
  {
    name: 'settings: a secret that is a plain string',
    line: (c) => seal(c, settings(c, { secrets: { API_KEY: c.marker } })),
    kind: 'invalid',
    reason: /secret API_KEY is not an encrypted secret/,
  },
  {
    name: 'settings: a secret name that is not a name',
    line: (c) => seal(c, settings(c, { secrets: { 'api key; rm': secret(c) } })),
    kind: 'invalid',
    reason: /secret name/,
  },
  {
    name: 'settings: removeSecrets with a bad name',
    line: (c) => seal(c, settings(c, { removeSecrets: ['../../etc'] })),
    kind: 'invalid',
    reason: /secret name/,
  },
  {
    name: 'settings: a tenant that is not a tenant',
    line: (c) => seal(c, settings(c, { tenant: '' })),
    kind: 'invalid',
    reason: /INVALID_TENANT/,
  },
  { name: 'an unknown op', line: (c) => seal(c, store(c, { op: 'drop_user' })), kind: 'invalid', reason: /^op:/ },
  {
    name: 'an op with a field missing (store without value)',
    line: (c) => seal(c, store(c, { value: undefined })),
    kind: 'invalid',
    reason: /^value:/,
  },
  {
    name: 'an extra top-level field',
    line: (c) => seal(c, store(c, { admin: true })),
    kind: 'invalid',
    reason: /admin/,
  },
  {
    name: 'a clock that is not a clock',
    line: (c) => seal(c, store(c, { clock: '9999' })),
    kind: 'invalid',
    reason: /is not a write clock/,
  },
  {
    name: 'a clock in the future (it would win over every real write)',
    line: (c) =>
      seal(c, store(c, { clock: `${String(Date.now() + 365 * 86_400_000).padStart(15, '0')}.0000000000.forger` })),
    kind: 'invalid',
    reason: /in the future/,
  },
  {
    name: 'another database',
    line: (c) => seal(c, store(c, { target: 'aaaaaaaaaaaa' })),
    kind: 'invalid',
    reason: /written for another database/,
  },
  {
    name: 'no database named',
    line: (c) => seal(c, store(c, { target: undefined })),
    kind: 'invalid',
    reason: /written for another database/,
  },
  {
    name: 'wrong version (v 1) with a correct MAC',
    line: (c) => seal(c, store(c, { v: 1 })),
    kind: 'invalid',
    reason: /unknown entry version 1/,
  },
  {
    name: 'non-object JSON (an array)',
    line: (c) => seal(c, [store(c)]),
    kind: 'invalid',
    reason: /not a JSON object/,
  },
  { name: 'non-object JSON (a string)', line: (c) => seal(c, c.marker), kind: 'invalid', reason: /not a JSON object/ },
  {
    name: 'not JSON at all, with a correct MAC',
    line: (c) => sealLine(c.key, `{op: store, value: ${c.marker}`),
    kind: 'invalid',
    reason: /not valid JSON/,
  },
  {
    name: 'a huge line (3 MB)',
    line: (c) => seal(c, store(c, { value: c.marker + 'x'.repeat(3_000_000) })),
    kind: 'corrupt',
    reason: /line is \d+ bytes; the limit is/,
  },
];

describe('a forged journal is set aside, reported, never served and never replayed', () => {
  let db: TestDatabase;
  let proxy: PgWireProxy;
  let proxyUrl: string;
  let check: MemoryStore;
  const dirs: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase('hostile');
    check = await openMemory({ env: {}, databaseUrl: db.url, journal: false });
    ({ proxy, url: proxyUrl } = await PgWireProxy.inFrontOf(db.url));
  });
  afterAll(async () => {
    await check?.close();
    await proxy?.stop();
    await db?.drop();
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  const sql = <R extends object>(text: string, params: unknown[] = []) => transportOf(check).query<R>(text, params);

  async function prepare(i: number): Promise<{ memory: MemoryStore; c: Ctx; file: string }> {
    const dir = tempDataDir('hostile');
    dirs.push(dir);
    proxy.startDatabase();
    const memory = await openMemory({
      env: {},
      databaseUrl: proxyUrl,
      dataDir: dir,
      migrate: false,
      timeoutMs: 400,
      backgroundSync: false,
    });
    const journal = memory.journal!;
    const victim = `victim-${i}@example.com`;
    const attacker = `attacker-${i}@example.com`;
    const c: Ctx = {
      key: await loadJournalKey(journal.dir),
      target: journal.prefix,
      victim,
      victimId: identityToUserId(victim),
      attacker,
      attackerId: identityToUserId(attacker),
      marker: `FORGED-${i}-${randomBytes(4).toString('hex')}`,
      clock: clocks.next(),
    };
    // A file as a dead writer would have left it (no live lock: any process may replay it).
    const file = path.join(journal.dir, `${journal.prefix}-999999-${Date.now()}-f0f0f0.jsonl`);
    return { memory, c, file };
  }

  async function notInDatabase(c: Ctx): Promise<void> {
    const rows = await sql<{ n: string }>(
      `select (select count(*) from public.memories where value like $1 or key like 'city%' and user_id in ($2, $3))
            + (select count(*) from public.memory_settings where config::text like $1 or secrets::text like $1)
            + (select count(*) from public.memory_users where (id not in ($2, $3) and identity in ($4, $5)) or (id = $2 and identity <> $4) or id = $3) as n`,
      [`%${c.marker}%`, c.victimId, c.attackerId, c.victim, c.attacker],
    );
    expect(Number(rows[0]!.n)).toBe(0);
  }

  it('control: a well-formed line with a correct MAC IS replayed (so the cases below test the checks, not the harness)', async () => {
    const { memory, c, file } = await prepare(0);
    try {
      fs.writeFileSync(file, seal(c, store(c)), { mode: 0o600 });
      expect(await memory.journal!.pendingFor(c.victimId)).toHaveLength(1);
      const report = await memory.sync();
      expect(report).toMatchObject({ applied: 1, problems: [] });
      expect(await check.forIdentity(c.victim).retrieve('FACT', 'city')).toBe(c.marker);
    } finally {
      await memory.close();
    }
  });

  it.each(CASES.map((k, i) => [k.name, k, i + 1] as const))('%s', async (_name, k, i) => {
    const { memory, c, file } = await prepare(i);
    try {
      const text = k.line(c);
      fs.writeFileSync(file, text, { mode: 0o600 });
      const journal = memory.journal!;

      // Database unreachable: nothing pending for anyone, and reads fail rather than serve the forgery.
      proxy.stopDatabase();
      expect(await journal.pendingFor(c.victimId)).toEqual([]);
      expect(await journal.pendingFor(c.attackerId)).toEqual([]);
      await expect(memory.forIdentity(c.victim).retrieve('FACT', 'city')).rejects.toMatchObject({
        code: expect.stringMatching(/BACKEND_UNAVAILABLE|TIMEOUT/),
      });
      const inspected = await journal.inspect();
      expect(inspected.pending).toEqual([]);
      expect(inspected.problems).toEqual([
        expect.objectContaining({ file, line: 1, kind: k.kind, reason: expect.stringMatching(k.reason) }),
      ]);

      // Reachable, before any replay: the victim's session, reads and settings hold nothing forged.
      proxy.startDatabase();
      const session = await memory.startSession(c.victim);
      expect(JSON.stringify(session)).not.toContain(c.marker);
      const victim = memory.forUser(session.user);
      expect(await victim.retrieve('FACT', 'city')).toBeNull();
      expect(await victim.list()).toEqual([]);
      expect(JSON.stringify(await victim.getSettings())).not.toContain(c.marker);
      expect(await memory.pendingFor(c.victim)).toEqual([]);

      // Replay: reported with its reason, set aside, nothing applied.
      const report = await memory.sync();
      expect(report).toMatchObject({ applied: 0, older: 0, remaining: 0 });
      expect(report.problems).toEqual([
        expect.objectContaining({ file, line: 1, kind: k.kind, reason: expect.stringMatching(k.reason) }),
      ]);
      await notInDatabase(c);
      expect(fs.existsSync(file)).toBe(false);
      const rejected = fs
        .readFileSync(file.replace(/\.jsonl$/, '.rejected'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { kind: string; reason: string; text: string });
      expect(rejected).toEqual([expect.objectContaining({ kind: k.kind, text: text.slice(0, -1) })]);
      expect(rejected[0]!.reason).toMatch(k.reason);
      // And it stays out: a second replay finds nothing.
      expect(await memory.sync()).toMatchObject({ applied: 0, problems: [] });
    } finally {
      proxy.startDatabase();
      await memory.close();
    }
  });

  it('one forged line among good ones: the good ones are served and replayed, the forged one is not', async () => {
    const { memory, c, file } = await prepare(900);
    try {
      const good = store(c, { key: 'good', value: 'real', clock: clocks.next() });
      fs.writeFileSync(
        file,
        seal(c, good) +
          seal(c, store(c, { userId: c.attackerId })) +
          seal(c, store(c, { key: 'good2', value: 'real2', clock: clocks.next() })),
        { mode: 0o600 },
      );
      expect((await memory.journal!.pendingFor(c.victimId)).map((op) => op.op === 'store' && op.value)).toEqual([
        'real',
        'real2',
      ]);
      const report = await memory.sync();
      expect(report.applied).toBe(2);
      expect(report.problems).toEqual([expect.objectContaining({ line: 2, kind: 'invalid' })]);
      expect(await check.forIdentity(c.victim).retrieve('FACT', 'good2')).toBe('real2');
      await notInDatabase(c);
    } finally {
      await memory.close();
    }
  });

  it('lk-memory inspect shows set-aside lines for the folder, never their values as pending writes of the victim', async () => {
    const { memory, c, file } = await prepare(950);
    try {
      fs.writeFileSync(file, seal(c, store(c, { userId: c.attackerId })) + 'not even json\n', { mode: 0o600 });
      await memory.close();
      const env = { DATABASE_URL: proxyUrl, MEMORY_DATA_DIR: path.dirname(memory.journal!.dir) };
      const json = await cli(['inspect', c.victim, '--json'], env);
      expect(json.code).toBe(0);
      const locations = (
        JSON.parse(json.stdout) as {
          locations: { pendingOutsideDatabase: unknown[]; journalSetAside: Array<{ kind: string; line: number }> };
        }
      ).locations;
      expect(locations.pendingOutsideDatabase).toEqual([]);
      expect(locations.journalSetAside.map((p) => [p.kind, p.line])).toEqual([
        ['invalid', 1],
        ['corrupt', 2],
      ]);
      const text = await cli(['inspect', c.victim], env);
      expect(text.stdout).toContain('2 line(s) or file(s) set aside');
      expect(text.stdout).not.toContain(c.marker);
      await notInDatabase(c);
    } finally {
      await memory.close();
    }
  });
});
