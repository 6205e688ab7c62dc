import { randomBytes } from 'node:crypto';
import net from 'node:net';

/**
 * Just enough of Redis's protocol (RESP2) to claim a database number for one multi-node run and
 * to look at what livekit-server keeps there (room_node_map). No npm Redis client is a dependency
 * of this project, and these few commands do not need one.
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

export type RedisReply = string | number | null | RedisReply[];

const HOW_TO_START =
  'Start Redis (`redis-server --bind 127.0.0.1 --port 6379 --daemonize yes`; on Debian `apt-get install -y redis-server`; `.ci/run` starts it) or set REDIS_ADDRESS=host:port.';

export class RedisConnection {
  #socket: net.Socket;
  #buffer = Buffer.alloc(0);
  #waiting: Array<{ resolve: (reply: RedisReply) => void; reject: (error: Error) => void }> = [];
  #closed: Error | undefined;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      this.#drain();
    });
    const fail = (error: Error) => {
      this.#closed ??= error;
      for (const w of this.#waiting.splice(0)) w.reject(error);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new RedisError('REDIS_UNREACHABLE', 'the Redis connection closed')));
  }

  static connect(address: string, timeoutMs = 3000): Promise<RedisConnection> {
    const [host, port] = splitAddress(address);
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, host);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new RedisError(
            'REDIS_UNREACHABLE',
            `Redis at ${address} did not answer within ${timeoutMs} ms. ${HOW_TO_START}`,
          ),
        );
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new RedisConnection(socket));
      });
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(
          new RedisError(
            'REDIS_UNREACHABLE',
            `Redis is not reachable at ${address} (${error.message}). ${HOW_TO_START}`,
          ),
        );
      });
    });
  }

  command(...args: Array<string | number>): Promise<RedisReply> {
    if (this.#closed) return Promise.reject(this.#closed);
    const parts = args.map(String);
    let out = `*${parts.length}\r\n`;
    for (const part of parts) out += `$${Buffer.byteLength(part)}\r\n${part}\r\n`;
    return new Promise((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
      this.#socket.write(out);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.command('QUIT').catch(() => {});
    this.#socket.destroy();
  }

  #drain(): void {
    for (;;) {
      const parsed = parseReply(this.#buffer, 0);
      if (!parsed) return;
      this.#buffer = this.#buffer.subarray(parsed.end);
      const waiter = this.#waiting.shift();
      if (!waiter) continue;
      if (parsed.error) waiter.reject(new RedisError('REDIS_ERROR', parsed.error));
      else waiter.resolve(parsed.value);
    }
  }
}

function splitAddress(address: string): [string, number] {
  const match = /^(.+):(\d+)$/.exec(address);
  if (!match) throw new RedisError('REDIS_ERROR', `a Redis address is host:port, not ${address}`);
  return [match[1]!, Number(match[2])];
}

interface Parsed {
  value: RedisReply;
  error?: string;
  end: number;
}

function parseReply(buffer: Buffer, start: number): Parsed | undefined {
  const lineEnd = buffer.indexOf('\r\n', start);
  if (lineEnd < 0) return undefined;
  const type = String.fromCharCode(buffer[start]!);
  const line = buffer.toString('utf8', start + 1, lineEnd);
  const after = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: line, end: after };
    case '-':
      return { value: null, error: line, end: after };
    case ':':
      return { value: Number(line), end: after };
    case '$': {
      const length = Number(line);
      if (length < 0) return { value: null, end: after };
      if (buffer.length < after + length + 2) return undefined;
      return { value: buffer.toString('latin1', after, after + length), end: after + length + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, end: after };
      const items: RedisReply[] = [];
      let at = after;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buffer, at);
        if (!item) return undefined;
        items.push(item.value);
        at = item.end;
      }
      return { value: items, end: at };
    }
    default:
      throw new RedisError('REDIS_ERROR', `unexpected Redis reply type ${JSON.stringify(type)}`);
  }
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
  const redis = await RedisConnection.connect(address);
  const token = `${process.pid}-${randomBytes(6).toString('hex')}`;
  const candidates = Array.from({ length: 15 }, (_, i) => i + 1).sort(() => Math.random() - 0.5);
  try {
    for (const db of candidates) {
      await redis.command('SELECT', db);
      if ((await redis.command('SET', CLAIM_KEY, token, 'NX', 'EX', CLAIM_TTL_SEC)) !== 'OK') continue;
      if ((await redis.command('DBSIZE')) === 1) {
        const renew = setInterval(() => {
          void redis.command('EXPIRE', CLAIM_KEY, CLAIM_TTL_SEC).catch(() => {});
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
              if ((await redis.command('GET', CLAIM_KEY).catch(() => null)) === token) {
                await redis.command('FLUSHDB').catch(() => {});
              }
              await redis.close();
            })();
            return released;
          },
        };
      }
      // Someone else's data: leave it alone.
      await redis.command('DEL', CLAIM_KEY);
    }
  } catch (error) {
    await redis.close();
    throw error;
  }
  await redis.close();
  throw new RedisError(
    'REDIS_NO_FREE_DB',
    `no free database number on the Redis at ${address} (1-15 all hold keys or a claim of another run): stop other cluster runs, or FLUSHDB the stale ones`,
  );
}

/** Which node hosts a room, as livekit-server records it (HGET room_node_map <room>). */
export async function nodeForRoom(address: string, db: number, room: string): Promise<string | null> {
  const redis = await RedisConnection.connect(address);
  try {
    await redis.command('SELECT', db);
    const reply = await redis.command('HGET', 'room_node_map', room);
    return typeof reply === 'string' ? reply : null;
  } finally {
    await redis.close();
  }
}
