import '../support/quiet-rtc.js';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { identityToUserId } from '../../memory/index.js';
import { MEMORY_TOOL_NAMES } from '../../plugins/index.js';
import {
  allText,
  both,
  lastToolResult,
  offers,
  rules,
  systemText,
  toolNames,
  toolResultFor,
  userSaid,
  type RecordedRequest,
} from '../support/openai-standin.js';
import { recallColour, rememberColour } from '../support/colour-script.js';
import { ROOT } from '../support/processes.js';
import { npm, packThisPackage } from '../support/npm.js';
import { releaseLiveKitClients, startStack, type Stack } from '../support/stack.js';

/**
 * The package as a consumer gets it: `npm pack` of this repository, installed from the tarball into
 * a temporary copy of examples/consumer-agent (its own package.json and @livekit/agents), whose own
 * agent, wired with userMemory() and handing off to a second agent, then runs against a real
 * livekit-server with two users.
 */

const ALICE = 'alice-example@example.com';
const BOB = 'bob-example@example.com';
const EXAMPLE = path.join(ROOT, 'examples/consumer-agent');

const script = rules(
  [
    {
      when: both(offers('transfer'), userSaid(/billing/i)),
      reply: { toolCalls: [{ name: 'transfer', arguments: {} }] },
    },
    rememberColour(/I like the colou?r (\w+)/i),
    recallColour,
    { when: toolResultFor(), reply: (req) => ({ text: `Done: ${String(lastToolResult(req)!.value)}` }) },
    { when: (req) => systemText(req).includes('first conversation'), reply: { text: 'Hello, nice to meet you!' } },
    { when: (req) => systemText(req).includes('returning'), reply: { text: 'Welcome back!' } },
  ],
  { text: 'OK.' },
);

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function requestsFor(stack: Stack, identity: string, since: number): RecordedRequest[] {
  return stack.model
    .chatRequests()
    .filter((r) => r.index >= since && (r.body as { user?: string }).user === identityToUserId(identity));
}

describe('the example project, installed from the packed package', () => {
  let work: string;
  let app: string;
  let stack: Stack;
  const mark = () => stack.model.requests.length;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'lkm-example-'));
    // prepack builds dist/ first, as on a fresh clone.
    const tarball = await packThisPackage(work);
    app = path.join(work, 'app');
    fs.cpSync(EXAMPLE, app, {
      recursive: true,
      filter: (source) => !/node_modules|package-lock\.json|\.data/.test(path.relative(EXAMPLE, source)),
    });
    const manifest = JSON.parse(fs.readFileSync(path.join(app, 'package.json'), 'utf8'));
    manifest.dependencies['livekit-user-memory'] = `file:${tarball}`;
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify(manifest, null, 2));
    await npm(['install', '--prefer-offline', '--no-audit', '--no-fund'], app);

    stack = await startStack({
      env: { AGENT_HTTP_PORT: String(await freePort()), MEMORY_DATA_DIR: path.join(work, 'data') },
      worker: { command: process.execPath, args: ['agent.js', 'start'], cwd: app, ready: /registered worker/ },
    });
    stack.model.setResponder(script);
  }, 600_000);

  afterAll(async () => {
    await stack?.stop();
    await releaseLiveKitClients();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('ships dist/, LICENSE and types, no test code, and installs with exactly one @livekit/agents', async () => {
    const installed = path.join(app, 'node_modules/livekit-user-memory');
    expect(fs.existsSync(path.join(installed, 'LICENSE'))).toBe(true);
    expect(fs.existsSync(path.join(installed, 'dist/plugins/index.d.ts'))).toBe(true);
    expect(fs.existsSync(path.join(installed, 'dist/test'))).toBe(false);
    expect(
      fs.readdirSync(path.join(installed, 'dist'), { recursive: true }).filter((f) => /\.map$/.test(String(f))),
    ).toEqual([]);
    // Only the backends the example uses: supabase-js is an optional peer it does not install.
    expect(fs.existsSync(path.join(app, 'node_modules/@supabase/supabase-js'))).toBe(false);

    const tree = await npm(['ls', '@livekit/agents', '--all', '--parseable'], app);
    const copies = tree.split('\n').filter((line) => line.endsWith(path.join('node_modules', '@livekit', 'agents')));
    expect(copies).toEqual([path.join(app, 'node_modules/@livekit/agents')]);
  });

  it('alice is greeted as new and her colour is stored under her own id; bob never sees it', async () => {
    let since = mark();
    const alice = await stack.join(ALICE);
    expect(await alice.waitForGreeting()).toBe('Hello, nice to meet you!');
    expect(await alice.say('I like the colour blue')).toContain('Saved PREFERENCE/"favorite_color" = "blue"');
    await alice.leave();
    const [greeting] = requestsFor(stack, ALICE, since);
    expect(toolNames(greeting!).sort()).toEqual([...MEMORY_TOOL_NAMES, 'transfer'].sort());

    since = mark();
    const bob = await stack.join(BOB);
    expect(await bob.waitForGreeting()).toBe('Hello, nice to meet you!');
    expect(await bob.say('What is my favourite colour?')).toContain(
      'Nothing is stored under PREFERENCE/"favorite_color"',
    );
    await bob.leave();
    const requests = stack.model.chatRequests().filter((r) => r.index >= since);
    expect(requests.length).toBeGreaterThanOrEqual(3);
    expect(requests.every((r) => (r.body as { user?: string }).user === identityToUserId(BOB))).toBe(true);
    for (const request of requests) expect(allText(request)).not.toMatch(/blue/i);
  });

  it('at the same time, each hands off to billing: the billing agent has its own user memory only', async () => {
    const since = mark();
    const [alice, bob] = await Promise.all([stack.join(ALICE), stack.join(BOB)]);
    await Promise.all([alice.waitForGreeting(), bob.waitForGreeting()]);
    expect(await bob.say('I like the colour green')).toContain('"green"');
    const [aliceMoved, bobMoved] = await Promise.all([
      alice.say('Put me through to billing'),
      bob.say('Put me through to billing'),
    ]);
    expect(aliceMoved).toContain('Transferred to billing');
    expect(bobMoved).toContain('Transferred to billing');
    const [aliceReply, bobReply] = await Promise.all([
      alice.say('What is my favourite colour?'),
      bob.say('What is my favourite colour?'),
    ]);
    expect(aliceReply).toContain('"blue"');
    expect(bobReply).toContain('"green"');
    await Promise.all([alice.leave(), bob.leave()]);

    // The billing agent was built from the memory loaded when each session started, with no second
    // round trip: alice's block has her blue; bob had nothing stored then (green came later, and
    // his recall above read it through his own tools).
    for (const [identity, block, other] of [
      [ALICE, '- PREFERENCE "favorite_color": "blue"', /green/i],
      [BOB, 'Nothing is remembered about this user yet.', /blue/i],
    ] as const) {
      const requests = requestsFor(stack, identity, since);
      const billing = requests.filter((r) => systemText(r).includes('You are the billing agent'));
      expect(billing.length).toBeGreaterThanOrEqual(1);
      expect(toolNames(billing[0]!).sort()).toEqual([...MEMORY_TOOL_NAMES].sort());
      expect(systemText(billing[0]!)).toContain(block);
      for (const request of requests) expect(allText(request)).not.toMatch(other);
    }
    const memory = await stack.memory();
    expect(await memory.forIdentity(ALICE).retrieve('PREFERENCE', 'favorite_color')).toBe('blue');
    expect(await memory.forIdentity(BOB).retrieve('PREFERENCE', 'favorite_color')).toBe('green');
  });
});
