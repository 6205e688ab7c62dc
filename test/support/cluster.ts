import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { openMemory, type MemoryStore } from '../../memory/index.js';
import { ChatParticipant } from '../../scripts/lib/chat-participant.js';
import { DEFAULT_CONFIG_PATH, type LivekitServerHandle } from '../../scripts/livekit/server.js';
import { startLivekitServerOnFreePorts } from '../../scripts/livekit/free-ports-server.js';
import { ScriptedOpenAI } from './openai-standin.js';
import { startPgBouncer, type PgBouncer } from './pgbouncer.js';
import { createTestDatabase, type TestDatabase } from './postgres.js';
import { DEFAULT_REDIS_ADDRESS, claimRedisDatabase, nodeForRoom, type RedisClaim } from './redis.js';
import { startStack, type Stack } from './stack.js';

/**
 * Several hosts on one machine, all real but the model:
 *
 * - `nodes` livekit-server nodes in LiveKit's multi-node mode, routed through the Redis at
 *   127.0.0.1:6379 in a database number of this run's own (livekit-server has no key prefix);
 *   each on its own free ports, loopback only. Each node is its own "region" with the
 *   region-aware node selector, so a room is hosted by the node the first participant joined
 *   through (the selector prefers the receiving node's region): tests place calls on purpose.
 * - `workers` worker processes (agent/main.ts, each with its own job processes and its own
 *   MEMORY_DATA_DIR, as if on its own host); worker i registers with node i mod nodes under an
 *   agent name of its own (startStack's random one), so a test picks which worker serves a call by the name it dispatches.
 * - one PostgreSQL reached only through PgBouncer in transaction pooling mode.
 * - the scripted OpenAI stand-in, shared by every worker.
 */
export interface ClusterNode {
  index: number;
  /** node-a, node-b, ...: also its region. */
  name: string;
  server: LivekitServerHandle;
  url: string;
  httpUrl: string;
  /** livekit-server's node id (ND_...), as it records it in Redis. */
  nodeId: string;
}

export interface ClusterWorker {
  index: number;
  /** The node whose /agent endpoint the worker registered with. */
  node: ClusterNode;
  agentName: string;
  dataDir: string;
  stack: Stack;
  pid: number;
}

export interface JoinOptions {
  /** The node whose URL the participant connects to (and which hosts the new room). */
  node: number;
  /** The worker whose agent name the token dispatches. */
  worker: number;
  room?: string;
}

export interface ClusterCall {
  participant: ChatParticipant;
  room: string;
  /** The room's sid (RM_...), as the server gave it: what worker logs name a room by. */
  sid: string;
}

export interface Cluster {
  nodes: ClusterNode[];
  workers: ClusterWorker[];
  model: ScriptedOpenAI;
  redis: { address: string; db: number };
  pgbouncer: PgBouncer;
  /** The database, direct (for checks that must not depend on the pooler). */
  databaseUrl: string;
  /** The database through PgBouncer: what every worker is given as DATABASE_URL. */
  pooledUrl: string;
  /** Join a fresh room through one node, dispatching one worker's agent. */
  join(identity: string, options: JoinOptions): Promise<ClusterCall>;
  /** The node that hosts a room, from livekit-server's room_node_map in Redis. */
  nodeOfRoom(room: string): Promise<ClusterNode | undefined>;
  /** A store on the direct connection, for checking what was stored (closed by stop()). */
  memory(): Promise<MemoryStore>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  nodes?: number;
  workers?: number;
  /** Redis host:port (default REDIS_ADDRESS, else 127.0.0.1:6379). */
  redisAddress?: string;
  /** A migrated-or-empty database to use (direct URL); default: a scratch database, dropped on stop. */
  databaseUrl?: string;
  /** A model stand-in already listening (the caller stops it); default: a new one. */
  model?: ScriptedOpenAI;
  /** Extra environment for every worker. */
  workerEnv?: NodeJS.ProcessEnv;
  onProgress?: (line: string) => void;
}

const nodeName = (i: number) => `node-${String.fromCharCode(97 + i)}`;

/**
 * livekit.yaml plus Redis and the region of this node. The regions are points 10 degrees apart;
 * only "own region first" matters.
 */
function nodeConfig(base: string, redis: RedisClaim, index: number, count: number): string {
  const regions = Array.from({ length: count }, (_, i) =>
    [`    - name: ${nodeName(i)}`, `      lat: 0`, `      lon: ${i * 10}`].join('\n'),
  );
  return [
    base.trimEnd(),
    '',
    '# Added by test/support/cluster.ts: multi-node mode through Redis.',
    'redis:',
    `  address: ${redis.address}`,
    `  db: ${redis.db}`,
    `region: ${nodeName(index)}`,
    'node_selector:',
    '  kind: regionaware',
    '  regions:',
    ...regions,
    '',
  ].join('\n');
}

/** livekit-server logs its node id at start ("nodeID": "ND_..."). */
async function readNodeId(logFile: string): Promise<string> {
  for (let i = 0; i < 50; i++) {
    const match = /"nodeID":\s*"(ND_[A-Za-z0-9]+)"/.exec(fs.readFileSync(logFile, 'utf8'));
    if (match) return match[1]!;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`livekit-server did not log its node id; see ${logFile}`);
}

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const progress = options.onProgress ?? (() => {});
  const nodeCount = options.nodes ?? 2;
  const workerCount = options.workers ?? 2;
  if (!Number.isInteger(nodeCount) || nodeCount < 1 || nodeCount > 15)
    throw new Error(`nodes must be an integer from 1 to 15, not ${nodeCount}`);
  if (!Number.isInteger(workerCount) || workerCount < 1 || workerCount > 16)
    throw new Error(`workers must be an integer from 1 to 16, not ${workerCount}`);

  // Everything started so far, stopped in reverse order on failure or stop().
  const undo: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const step of undo.splice(0).reverse()) await step().catch(() => {});
  };
  try {
    const redis = await claimRedisDatabase(options.redisAddress ?? process.env.REDIS_ADDRESS ?? DEFAULT_REDIS_ADDRESS);
    undo.push(() => redis.release());
    progress(`redis ${redis.address} db ${redis.db}`);

    let db: TestDatabase | undefined;
    if (!options.databaseUrl) {
      db = await createTestDatabase('cluster');
      undo.push(() => db!.drop());
    }
    const databaseUrl = options.databaseUrl ?? db!.url;
    const pgbouncer = await startPgBouncer();
    undo.push(() => pgbouncer.stop());
    const pooledUrl = pgbouncer.urlFor(databaseUrl);
    // Migrate once, through the pooler as a deploy would (see README: no direct URL needed).
    await (await openMemory({ env: {}, databaseUrl: pooledUrl, journal: false })).close();
    progress(`postgres through pgbouncer ${pgbouncer.host}:${pgbouncer.port} (transaction pooling)`);

    const configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lkm-cluster-'));
    undo.push(async () => fs.rmSync(configDir, { recursive: true, force: true }));
    const base = fs.readFileSync(DEFAULT_CONFIG_PATH, 'utf8');
    const nodes: ClusterNode[] = [];
    for (let i = 0; i < nodeCount; i++) {
      const configPath = path.join(configDir, `${nodeName(i)}.yaml`);
      fs.writeFileSync(configPath, nodeConfig(base, redis, i, nodeCount));
      const server = await startLivekitServerOnFreePorts({ configPath, onProgress: progress });
      undo.push(() => server.stop());
      nodes.push({
        index: i,
        name: nodeName(i),
        server,
        url: server.url,
        httpUrl: server.httpUrl,
        nodeId: await readNodeId(server.logFile),
      });
      progress(`${nodeName(i)} ${server.url} (${nodes[i]!.nodeId}, log ${server.logFile})`);
    }

    const model = options.model ?? new ScriptedOpenAI();
    if (!model.listening) {
      await model.start();
      undo.push(() => model.stop());
    }

    const workers: ClusterWorker[] = [];
    for (let i = 0; i < workerCount; i++) {
      const node = nodes[i % nodeCount]!;
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `lkm-worker${i + 1}-`));
      const stack = await startStack({
        livekit: node.server,
        model,
        dataDir,
        env: {
          DATABASE_URL: pooledUrl,
          ...options.workerEnv,
        },
        onProgress: progress,
      });
      undo.push(async () => {
        await stack.stop();
        fs.rmSync(dataDir, { recursive: true, force: true });
      });
      workers.push({ index: i, node, agentName: stack.agentName, dataDir, stack, pid: stack.worker.pid! });
      progress(`worker ${i + 1} (pid ${stack.worker.pid}) registered with ${node.name} as ${stack.agentName}`);
    }

    let store: MemoryStore | undefined;
    const participants: ChatParticipant[] = [];
    return {
      nodes,
      workers,
      model,
      redis: { address: redis.address, db: redis.db },
      pgbouncer,
      databaseUrl,
      pooledUrl,
      async join(identity, { node, worker, room = `room-${randomBytes(4).toString('hex')}` }) {
        const n = nodes[node];
        const w = workers[worker];
        if (!n || !w) throw new Error(`no node ${node} or worker ${worker} in this cluster`);
        const participant = await ChatParticipant.join(n.url, {
          apiKey: n.server.apiKey,
          apiSecret: n.server.apiSecret,
          identity,
          room,
          agentName: w.agentName,
        });
        participants.push(participant);
        return { participant, room, sid: await participant.room.getSid() };
      },
      async nodeOfRoom(room) {
        const id = await nodeForRoom(redis.address, redis.db, room);
        return nodes.find((n) => n.nodeId === id);
      },
      async memory() {
        store ??= await openMemory({ env: {}, databaseUrl, journal: false, migrate: false });
        return store;
      },
      async stop() {
        for (const p of participants) await p.leave().catch(() => {});
        await store?.close();
        await stopAll();
      },
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}
