import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

/**
 * Redis for the multi-node stack (ioredis): claim a database number for one run, and look at what
 * livekit-server keeps there (room_node_map).
 */

export type RedisErrorCode = 'REDIS_UNREACHABLE' | 'REDIS_ERROR' | 'REDIS_NO_FREE_DB';

export class RedisError extends Error {
  override readonly name = 'RedisError';
  constructor(
    readonly code: RedisErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const HOW_TO_START =
  'Start Redis (`redis-server --bind 127.0.0.1 --port 6379 --daemonize yes`; on Debian `apt-get install -y redis-server`; `.ci/run` starts it) or set REDIS_ADDRESS=host:port.';

/** A connection to one database number, that fails at once (no retries) when Redis is not there. */
async function connect(address: string, db = 0): Promise<Redis> {
  const [host, port] = splitAddress(address);
  const redis = new Redis({
    host,
    port,
    db,
    lazyConnect: true,
    connectTimeout: 3000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  redis.on('error', () => {}); // reported by connect() below, or by the command that failed
  try {
    await redis.connect();
  } catch (error) {
    redis.disconnect();
    throw new RedisError(
      'REDIS_UNREACHABLE',
      `Redis at ${address} is not answering (${(error as Error).message}). ${HOW_TO_START}`,
    );
  }
  return redis;
}

function splitAddress(address: string): [string, number] {
  const at = address.lastIndexOf(':');
  const port = Number(address.slice(at + 1));
  if (at <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new RedisError('REDIS_ERROR', `REDIS_ADDRESS must be host:port, not ${JSON.stringify(address)}`);
  }
  return [address.slice(0, at), port];
}

export const DEFAULT_REDIS_ADDRESS = '127.0.0.1:6379';

export interface RedisClaim {
  address: string;
  db: number;
  /** Flush the database (what livekit-server left there) and give the number back. Idempotent. */
  release(): Promise<void>;
}

const CLAIM_KEY = 'lkm:cluster:claim';
const CLAIM_TTL_SEC = 3600;

/**
 * A Redis database number of our own for one multi-node run, so that parallel runs (and anything
 * else on this Redis) never share livekit-server's keys: livekit-server has no key prefix, only
 * `redis.db`. Databases 1-15 are tried in random order; one is ours when our claim key is the only
 * key in it. The claim expires after an hour unless renewed (a crashed run gives its number back),
 * and is renewed every ten minutes while the run lives. Database 0 is never used.
 */
export async function claimRedisDatabase(address = DEFAULT_REDIS_ADDRESS): Promise<RedisClaim> {
  const token = `${process.pid}-${randomBytes(6).toString('hex')}`;
  const candidates = Array.from({ length: 15 }, (_, i) => i + 1).sort(() => Math.random() - 0.5);
  for (const db of candidates) {
    const redis = await connect(address, db);
    try {
      if ((await redis.set(CLAIM_KEY, token, 'EX', CLAIM_TTL_SEC, 'NX')) !== 'OK') {
        redis.disconnect();
        continue;
      }
      if ((await redis.dbsize()) === 1) {
        const renew = setInterval(() => {
          void redis.expire(CLAIM_KEY, CLAIM_TTL_SEC).catch(() => {});
        }, 600_000);
        renew.unref();
        let released: Promise<void> | undefined;
        return {
          address,
          db,
          release() {
            released ??= (async () => {
              clearInterval(renew);
              // Only what is ours: the claim must still be our token.
              if ((await redis.get(CLAIM_KEY).catch(() => null)) === token) {
                await redis.flushdb().catch(() => {});
              }
              redis.disconnect();
            })();
            return released;
          },
        };
      }
      // Someone else's data: leave it alone.
      await redis.del(CLAIM_KEY);
      redis.disconnect();
    } catch (error) {
      redis.disconnect();
      throw error;
    }
  }
  throw new RedisError(
    'REDIS_NO_FREE_DB',
    `no free database number on the Redis at ${address} (1-15 all hold keys or a claim of another run): stop other cluster runs, or FLUSHDB the stale ones`,
  );
}

/** Which node hosts a room, as livekit-server records it (HGET room_node_map <room>). */
export async function nodeForRoom(address: string, db: number, room: string): Promise<string | null> {
  const redis = await connect(address, db);
  try {
    return await redis.hget('room_node_map', room);
  } finally {
    redis.disconnect();
  }
}
