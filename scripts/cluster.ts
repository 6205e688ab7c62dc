/**
 * `npm run cluster -- --nodes 2 --workers 2`: several hosts on one machine (livekit-server nodes
 * routed through Redis, workers with their own data folders, PostgreSQL through PgBouncer in
 * transaction pooling mode, the scripted model), up until Ctrl-C. The tests use the same code
 * (test/support/cluster.ts).
 */
import { parseArgs } from 'node:util';
import { startCluster, type Cluster } from '../test/support/cluster.js';
import { releaseLiveKitClients } from '../test/support/stack.js';
import { redactUrl } from '../memory/redact.js';
import { runMain } from './livekit/main.js';
import { createJoinToken } from './lib/token.js';

const HELP = `Usage: npm run cluster [-- --nodes <n>] [-- --workers <n>] [-- --database-url <url>] [-- --redis <host:port>]

Starts a multi-node stack on this machine and keeps it up until Ctrl-C:

  - <nodes> livekit-server nodes (default 2) in LiveKit's multi-node mode, routed through Redis
    (default 127.0.0.1:6379, or REDIS_ADDRESS) in a Redis database number of their own (1-15, claimed
    for this run and flushed at exit), each on free loopback ports and in a "region" of its own, so
    a room is hosted by the node its first participant connected to;
  - <workers> worker processes (default 2), each with its own MEMORY_DATA_DIR and agent name,
    worker i registered with node i mod <nodes>;
  - PgBouncer in transaction pooling mode on a free port in front of PostgreSQL: every worker's
    DATABASE_URL goes through it;
  - the scripted OpenAI-compatible model stand-in (no key needed; it greets and answers "OK.").

  --nodes <n>           livekit-server nodes, 1-15 (default 2)
  --workers <n>         worker processes, 1-16 (default 2)
  --database-url <url>  the PostgreSQL behind PgBouncer (default: a scratch database on
                        TEST_DATABASE_URL, DATABASE_URL or postgres://postgres@127.0.0.1:5432/postgres,
                        dropped at exit)
  --redis <host:port>   the Redis the nodes share (default REDIS_ADDRESS or 127.0.0.1:6379)
  -h, --help            this text

It prints each node's URL, each worker's agent name and a join token per worker. Needs
pgbouncer (apt-get install -y pgbouncer), redis-server, PostgreSQL and livekit-server
(npm run livekit:install).
`;

export async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        nodes: { type: 'string' },
        workers: { type: 'string' },
        'database-url': { type: 'string' },
        redis: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const count = (value: string | undefined, name: string, max: number): number => {
    if (value === undefined) return 2;
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1 || n > max)
      throw new UsageError(`--${name} must be an integer from 1 to ${max}, not ${value}`);
    return n;
  };
  let nodes: number;
  let workers: number;
  try {
    nodes = count(values.nodes, 'nodes', 15);
    workers = count(values.workers, 'workers', 16);
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    return 2;
  }

  let cluster: Cluster;
  try {
    cluster = await startCluster({
      nodes,
      workers,
      databaseUrl: values['database-url'],
      redisAddress: values.redis,
      onProgress: (line) => process.stderr.write(`${line}\n`),
    });
  } catch (error) {
    process.stderr.write(`could not start the cluster: ${(error as Error).message}\n`);
    return 1;
  }

  const lines = [
    '',
    `cluster up: ${nodes} node(s), ${workers} worker(s)`,
    `  redis          ${cluster.redis.address} db ${cluster.redis.db}`,
    `  postgres       ${redactUrl(cluster.databaseUrl)} (direct)`,
    `  DATABASE_URL   ${redactUrl(cluster.pooledUrl)} (PgBouncer, transaction pooling)`,
    `  model          ${cluster.model.baseURL} (scripted stand-in)`,
    `  LIVEKIT_API_KEY=${cluster.nodes[0]!.server.apiKey} LIVEKIT_API_SECRET=${cluster.nodes[0]!.server.apiSecret}`,
  ];
  for (const node of cluster.nodes) {
    lines.push(`  ${node.name}  LIVEKIT_URL=${node.url}  (${node.nodeId}, log ${node.server.logFile})`);
  }
  for (const worker of cluster.workers) {
    const token = await createJoinToken({
      apiKey: worker.node.server.apiKey,
      apiSecret: worker.node.server.apiSecret,
      identity: 'you@example.com',
      room: `cluster-${worker.index + 1}-${Date.now().toString(36)}`,
      agentName: worker.agentName,
    });
    lines.push(
      `  worker ${worker.index + 1}  pid ${worker.pid}, registered with ${worker.node.name} as "${worker.agentName}", MEMORY_DATA_DIR=${worker.dataDir}`,
      `            join token (any node's URL): ${token}`,
    );
  }
  lines.push('Ctrl-C stops everything.', '');
  process.stdout.write(lines.join('\n'));

  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  process.stdout.write('stopping the cluster...\n');
  await cluster.stop();
  await releaseLiveKitClients();
  process.stdout.write('stopped.\n');
  return 0;
}

class UsageError extends Error {
  override readonly name = 'UsageError';
}

runMain(import.meta.url, main);
