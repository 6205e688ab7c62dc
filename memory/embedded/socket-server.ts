import net from 'node:net';
import type { PGlite } from '@electric-sql/pglite';
import type { Gate } from './gate.js';
import {
  CANCEL_REQUEST_CODE,
  GSSENC_REQUEST_CODE,
  SSL_REQUEST_CODE,
  splitMessages,
  type FrontendMessage,
} from './wire.js';

export interface EmbeddedSocketServerOptions {
  /**
   * A client that holds the database (inside a transaction, or between Parse and Sync) and sends
   * nothing for this long is disconnected, so one stuck job process cannot stall every call.
   */
  holdTimeoutMs?: number;
}

function typedMessage(type: string, body: Buffer): Buffer {
  const message = Buffer.alloc(5 + body.length);
  message.write(type, 0, 'latin1');
  message.writeInt32BE(4 + body.length, 1);
  body.copy(message, 5);
  return message;
}
const SYNC = typedMessage('S', Buffer.alloc(0));
const ROLLBACK = typedMessage('Q', Buffer.from('rollback\0', 'utf8'));

/**
 * Serves one PGlite database to other processes over a Unix socket, speaking the PostgreSQL wire
 * protocol so that they use the same client (node-postgres) as DATABASE_URL.
 *
 * Why not PGLiteSocketServer from @electric-sql/pglite-socket (0.2.17)? It multiplexes clients one
 * protocol *message* at a time. A round trip is several messages (Parse, Bind, Describe, Execute,
 * Sync) that share the session's unnamed statement and portal, so when a client's round trip
 * arrives in two TCP chunks another client's round trip can run in between and take over its
 * portal: we reproduced "portal does not exist" that way, and with other timing one client would
 * read rows meant for another. Here a client holds the single session from its first message until
 * a Sync or simple Query leaves the session outside a transaction. docs/embedded.md has the details.
 */
export class EmbeddedSocketServer {
  readonly #db: PGlite;
  readonly #gate: Gate;
  readonly #holdTimeoutMs: number;
  readonly #connections = new Set<Connection>();
  #server: net.Server | undefined;

  constructor(db: PGlite, gate: Gate, options: EmbeddedSocketServerOptions = {}) {
    this.#db = db;
    this.#gate = gate;
    this.#holdTimeoutMs = options.holdTimeoutMs ?? 30_000;
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  listen(path: string): Promise<void> {
    const server = net.createServer((socket) => {
      const connection = new Connection(socket, this.#db, this.#gate, this.#holdTimeoutMs, () => {
        this.#connections.delete(connection);
      });
      this.#connections.add(connection);
    });
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const connection of this.#connections) connection.destroy();
    await Promise.all([...this.#connections].map((c) => c.finished));
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

class Connection {
  #buffer: Buffer = Buffer.alloc(0);
  #startup = true;
  #work: Promise<void> = Promise.resolve();
  #release: (() => void) | undefined;
  #holdTimer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly finished: Promise<void>;
  #finish!: () => void;

  constructor(
    private readonly socket: net.Socket,
    private readonly db: PGlite,
    private readonly gate: Gate,
    private readonly holdTimeoutMs: number,
    onClosed: () => void,
  ) {
    this.finished = new Promise((resolve) => {
      this.#finish = () => {
        onClosed();
        resolve();
      };
    });
    socket.setNoDelay(true);
    socket.on('data', (chunk) => this.#onData(chunk));
    socket.on('error', () => this.destroy());
    socket.on('close', () => this.destroy());
  }

  #onData(chunk: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    const { messages, rest, startup } = splitMessages(this.#buffer, this.#startup);
    this.#buffer = rest;
    this.#startup = startup;
    if (messages.length === 0) return;
    // Messages of one connection are handled strictly in order.
    this.#work = this.#work.then(() => this.#handle(messages)).catch(() => this.destroy());
  }

  async #handle(messages: FrontendMessage[]): Promise<void> {
    for (const message of messages) {
      if (this.#closed) return;
      if (message.type === '' && (message.code === SSL_REQUEST_CODE || message.code === GSSENC_REQUEST_CODE)) {
        this.socket.write('N'); // no encryption on a local socket
        continue;
      }
      if ((message.type === '' && message.code === CANCEL_REQUEST_CODE) || message.type === 'X') {
        this.destroy();
        return;
      }
      if (!this.#release) this.#release = await this.gate.acquire();
      if (this.#closed) {
        this.#releaseGate();
        return;
      }
      this.#armHoldTimer();
      await this.db.runExclusive(() =>
        this.db.execProtocolRawStream(message.bytes, {
          onRawData: (data: Uint8Array) => {
            if (!this.#closed && data.length > 0) this.socket.write(Buffer.from(data));
          },
        }),
      );
      // A round trip ends at Sync or a simple Query (or the startup packet). Only then, and only
      // outside a transaction, may another client have the session.
      const endsRoundTrip = message.type === 'S' || message.type === 'Q' || message.type === '';
      if (endsRoundTrip && !this.db.isInTransaction()) this.#releaseGate();
    }
  }

  #armHoldTimer(): void {
    clearTimeout(this.#holdTimer);
    this.#holdTimer = setTimeout(() => this.destroy(), this.holdTimeoutMs);
    this.#holdTimer.unref();
  }

  #releaseGate(): void {
    clearTimeout(this.#holdTimer);
    this.#holdTimer = undefined;
    const release = this.#release;
    this.#release = undefined;
    release?.();
  }

  destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.socket.destroy();
    // Wait for the message in flight, then give the session back clean: a client that vanished
    // between Parse and Sync, or inside a transaction, must not leave a half round trip, an
    // aborted statement or an open transaction for the next one.
    void this.#work
      .then(async () => {
        if (!this.#release) return;
        await this.db.runExclusive(async () => {
          await this.db.execProtocolRaw(SYNC);
          if (this.db.isInTransaction()) await this.db.execProtocolRaw(ROLLBACK);
        });
      })
      .catch(() => {})
      .finally(() => {
        this.#releaseGate();
        this.#finish();
      });
  }
}
