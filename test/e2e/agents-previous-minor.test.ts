import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { identityToUserId } from '../../memory/index.js';
import { npm, packThisPackage } from '../support/npm.js';
import { ROOT, cleanEnv } from '../support/processes.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';

const run = promisify(execFile);
/** The previous minor of @livekit/agents: the peer range (^1.8.0) says it works, so it is tested. */
const PREVIOUS_AGENTS = '~1.8.1';

/**
 * The packed package next to the previous minor of @livekit/agents, in a project of its own: the
 * memory tools must be accepted by that version's `voice.Agent` (a second copy of agents would
 * reject them as "not an anonymous function tool") and run through its own ToolContext.
 */
const CONSUMER = `
import { llm, voice } from '@livekit/agents';
import { openMemory } from 'livekit-user-memory';
import { createMemoryTools, renderMemoryBlock } from 'livekit-user-memory/plugins';

const memory = await openMemory({ databaseUrl: process.env.DATABASE_URL, journal: false });
const session = await memory.startSession('agents-previous-minor@example.com');
const tools = createMemoryTools(memory.forUser(session.user));
const agent = new voice.Agent({ instructions: renderMemoryBlock(session.memories), tools });
const tool = new llm.ToolContext(tools).getFunctionTool('remember');
const args = tool.parameters.parse({ category: 'PREFERENCE', key: 'favorite_color', value: 'teal' });
const answer = await tool.execute(args, { ctx: {}, toolCallId: 'call_1', abortSignal: new AbortController().signal });
const { version } = JSON.parse(
  (await import('node:fs')).readFileSync(new URL('./node_modules/@livekit/agents/package.json', import.meta.url), 'utf8'),
);
console.log(JSON.stringify({ version, userId: session.user.id, agentTools: Object.keys(agent.toolCtx.functionTools).sort(), answer }));
await memory.close();
`;

describe('with the previous minor of @livekit/agents', () => {
  let work: string;
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase('agents18');
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'lkm-agents18-'));
    const tarball = await packThisPackage(work);
    const app = path.join(work, 'app');
    fs.mkdirSync(app);
    const ours = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      peerDependencies: Record<string, string>;
    };
    fs.writeFileSync(
      path.join(app, 'package.json'),
      JSON.stringify({
        name: 'agents-previous-minor',
        private: true,
        type: 'module',
        dependencies: {
          '@livekit/agents': PREVIOUS_AGENTS,
          '@livekit/rtc-node': ours.peerDependencies['@livekit/rtc-node'],
          zod: ours.peerDependencies.zod,
          pg: ours.peerDependencies.pg,
          'livekit-user-memory': `file:${tarball}`,
        },
      }),
    );
    fs.writeFileSync(path.join(app, 'consumer.js'), CONSUMER);
    await npm(['install', '--prefer-offline', '--no-audit', '--no-fund'], app);
  }, 600_000);

  afterAll(async () => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
    await db?.drop();
  });

  it('its voice.Agent takes the memory tools, and remember stores under the caller’s UUIDv5', async () => {
    const { stdout } = await run(process.execPath, ['consumer.js'], {
      cwd: path.join(work, 'app'),
      env: cleanEnv({ DATABASE_URL: db.url }),
    });
    const out = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
      version: string;
      userId: string;
      agentTools: string[];
      answer: string;
    };
    expect(out.version).toMatch(/^1\.8\./);
    expect(out.userId).toBe(identityToUserId('agents-previous-minor@example.com'));
    expect(out.agentTools).toContain('remember');
    expect(out.agentTools).toContain('search_memories');
    expect(out.answer).toContain('Saved PREFERENCE/"favorite_color"');
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const { rows } = await client.query("select user_id, value from public.memories where key = 'favorite_color'");
      expect(rows).toEqual([{ user_id: out.userId, value: 'teal' }]);
    } finally {
      await client.end();
    }
  }, 120_000);
});
