import '../support/quiet-rtc.js';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { identityToUserId } from '../../memory/index.js';
import { transportOf } from '../../memory/store.js';
import { startCluster, type Cluster, type ClusterCall } from '../support/cluster.js';
import {
  allText,
  both,
  lastToolResult,
  lastUserText,
  offers,
  rules,
  systemText,
  toolResultFor,
  userSaid,
  type RecordedRequest,
} from '../support/openai-standin.js';
import { releaseLiveKitClients } from '../support/stack.js';
import { descendants } from '../support/proc.js';

/** What a real model would do for these lines, decided from the request alone. */
const script = rules(
  [
    {
      when: both(offers('remember'), userSaid(/I like the colou?r (\w+)/i)),
      reply: (req) => ({
        toolCalls: [
          {
            name: 'remember',
            arguments: {
              category: 'PREFERENCE',
              key: 'favorite_color',
              value: /colou?r (\w+)/i.exec(lastUserText(req)!)![1]!,
            },
          },
        ],
      }),
    },
    {
      when: both(offers('recall'), userSaid(/what is my favou?rite colou?r/i)),
      reply: { toolCalls: [{ name: 'recall', arguments: { category: 'PREFERENCE', key: 'favorite_color' } }] },
    },
    { when: toolResultFor(), reply: (req) => ({ text: `Done: ${String(lastToolResult(req)!.value)}` }) },
    { when: (req) => systemText(req).includes('first conversation'), reply: { text: 'Hello, nice to meet you!' } },
    { when: (req) => systemText(req).includes('returning'), reply: { text: 'Welcome back!' } },
  ],
  { text: 'OK.' },
);

/**
 * Two livekit-server nodes routed through Redis, two workers (each its own process tree and data
 * folder, registered with different nodes), one PostgreSQL through PgBouncer in transaction
 * pooling mode. Calls are placed on purpose: a participant joins through one node's URL (which
 * then hosts the room: each node is its own region) and dispatches one worker's agent name.
 */
describe('memory across livekit-server nodes and workers', () => {
  let cluster: Cluster;
  const mark = () => cluster.model.requests.length;
  const requestsFor = (identity: string, since: number): RecordedRequest[] =>
    cluster.model
      .chatRequests()
      .filter((r) => r.index >= since && (r.body as { user?: string }).user === identityToUserId(identity));
  /**
   * The workers whose job processes served a room: their log has "memory ready for participant"
   * with the room's sid (the participant read the sid from the server when it joined).
   */
  const servedBy = (call: ClusterCall) => {
    expect(call.sid).toMatch(/^RM_/);
    return cluster.workers
      .filter((w) =>
        w.stack.workerLog.some(
          (line) => line.includes(`"room_id":"${call.sid}"`) && line.includes('memory ready for participant'),
        ),
      )
      .map((w) => w.index);
  };

  beforeAll(async () => {
    cluster = await startCluster({ nodes: 2, workers: 2 });
    cluster.model.setResponder(script);
    expect(cluster.workers.map((w) => w.node.name)).toEqual(['node-a', 'node-b']);
  }, 300_000);
  afterAll(async () => {
    await cluster?.stop();
    await releaseLiveKitClients();
  });

  it('a user first served by node A / worker 1 is greeted as returning, with their memory, by node B / worker 2', async () => {
    const alice = 'alice-cluster@example.com';
    let since = mark();
    const first = await cluster.join(alice, { node: 0, worker: 0 });
    expect(await first.participant.waitForGreeting()).toBe('Hello, nice to meet you!');
    expect(await first.participant.say('I like the colour teal')).toContain(
      'Saved PREFERENCE/"favorite_color" = "teal"',
    );
    await first.participant.leave();
    expect((await cluster.nodeOfRoom(first.room))?.name).toBe('node-a');
    expect(servedBy(first)).toEqual([0]);
    expect(systemText(requestsFor(alice, since)[0]!)).toContain('first conversation');

    since = mark();
    const second = await cluster.join(alice, { node: 1, worker: 1 });
    expect(await second.participant.waitForGreeting()).toBe('Welcome back!');
    await second.participant.leave();
    expect((await cluster.nodeOfRoom(second.room))?.name).toBe('node-b');
    expect(servedBy(second)).toEqual([1]);
    const greeting = requestsFor(alice, since)[0]!;
    expect(systemText(greeting)).toContain('returning');
    expect(systemText(greeting)).toContain('teal');
  });

  it('two users on different nodes at once, each served by the worker of the other node, stay isolated', async () => {
    const bob = 'bob-cluster@example.com';
    const carol = 'carol-cluster@example.com';
    const since = mark();
    // Cross placement: bob's room is on node B but his job runs on worker 1 (registered with node
    // A); carol's the other way round. Jobs reach workers through Redis, not through one node.
    const [b, c] = await Promise.all([
      cluster.join(bob, { node: 1, worker: 0 }),
      cluster.join(carol, { node: 0, worker: 1 }),
    ]);
    await Promise.all([b.participant.waitForGreeting(), c.participant.waitForGreeting()]);
    const [bobSaved, carolSaved] = await Promise.all([
      b.participant.say('I like the colour amber'),
      c.participant.say('I like the colour violet'),
    ]);
    expect(bobSaved).toContain('"amber"');
    expect(carolSaved).toContain('"violet"');
    const [bobRecall, carolRecall] = await Promise.all([
      b.participant.say('What is my favourite colour?'),
      c.participant.say('What is my favourite colour?'),
    ]);
    expect(bobRecall).toContain('amber');
    expect(bobRecall).not.toContain('violet');
    expect(carolRecall).toContain('violet');
    expect(carolRecall).not.toContain('amber');
    await Promise.all([b.participant.leave(), c.participant.leave()]);

    expect((await cluster.nodeOfRoom(b.room))?.name).toBe('node-b');
    expect((await cluster.nodeOfRoom(c.room))?.name).toBe('node-a');
    expect(servedBy(b)).toEqual([0]);
    expect(servedBy(c)).toEqual([1]);
    const bobRequests = requestsFor(bob, since);
    const carolRequests = requestsFor(carol, since);
    expect(bobRequests.length).toBeGreaterThanOrEqual(5); // greeting, two turns with a tool each
    expect(carolRequests.length).toBeGreaterThanOrEqual(5);
    expect(bobRequests.every((r) => !allText(r).includes('violet'))).toBe(true);
    expect(carolRequests.every((r) => !allText(r).includes('amber'))).toBe(true);
    // Every request of the run is attributed to one of the two users.
    const both = cluster.model.chatRequests().filter((r) => r.index >= since);
    expect(both.length).toBe(bobRequests.length + carolRequests.length);

    const rows = await transportOf(await cluster.memory()).query<{ user_id: string; value: string }>(
      "select user_id, value from public.memories where category = 'PREFERENCE' and key = 'favorite_color' and user_id = any($1::uuid[]) order by value",
      [[identityToUserId(bob), identityToUserId(carol)]],
    );
    expect(rows).toEqual([
      { user_id: identityToUserId(bob), value: 'amber' },
      { user_id: identityToUserId(carol), value: 'violet' },
    ]);
  });

  it('a worker killed mid-call loses no acknowledged write, and the next call, on the other worker, sees it', async () => {
    const dave = 'dave-cluster@example.com';
    const call = await cluster.join(dave, { node: 0, worker: 0 });
    await call.participant.waitForGreeting();
    const ack = await call.participant.say('I like the colour saffron');
    expect(ack).toContain('Saved PREFERENCE/"favorite_color" = "saffron"');

    // SIGKILL the whole worker 1 while dave is still in the call: its job processes and main process.
    const victim = cluster.workers[0]!;
    const tree = [...descendants(victim.pid), victim.pid];
    expect(tree.length).toBeGreaterThan(1); // at least the job process serving dave
    for (const pid of tree) process.kill(pid, 'SIGKILL');
    await new Promise((resolve) =>
      victim.stack.worker.exitCode !== null || victim.stack.worker.signalCode !== null
        ? resolve(undefined)
        : victim.stack.worker.once('exit', resolve),
    );
    await call.participant.leave();

    // Nothing was left in worker 1's journal: the write was acknowledged after the database committed it.
    const journal = `${victim.dataDir}/journal`;
    const pending = fs.existsSync(journal)
      ? fs.readdirSync(journal).filter((f) => f.endsWith('.jsonl') && fs.statSync(`${journal}/${f}`).size > 0)
      : [];
    expect(pending).toEqual([]);

    const since = mark();
    const next = await cluster.join(dave, { node: 1, worker: 1 });
    expect(await next.participant.waitForGreeting()).toBe('Welcome back!');
    expect(await next.participant.say('What is my favourite colour?')).toContain('saffron');
    await next.participant.leave();
    expect(servedBy(next)).toEqual([1]);
    expect(systemText(requestsFor(dave, since)[0]!)).toContain('saffron');
  });
});
