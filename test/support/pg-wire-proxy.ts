import net from 'node:net';
import { splitMessages } from '../../memory/embedded/wire.js';

export type ProxyTarget = { host: string; port: number } | { path: string };

/**
 * A TCP proxy in front of a real PostgreSQL (or the embedded socket) that reads the client's side
 * of the wire protocol and counts messages by type. A round trip ends with Sync ('S') or a simple
 * Query ('Q'), so `roundTrips` is what the database was asked to do, counted on the wire and not
 * inferred from timing. Later fault tests use `dropAll` to cut connections.
 */
export class PgWireProxy {
  readonly counts = new Map<string, number>();
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  port = 0;
  /** While true, connections are cut and new ones refused: the database looks stopped. */
  #down = false;
  /** Added to every chunk in either direction: a slow database or network. */
  #delayMs = 0;

  constructor(private readonly target: ProxyTarget) {
    this.#server = net.createServer((client) => this.#accept(client));
  }

  /** A started proxy in front of the database at `databaseUrl`, and the URL that reaches it through the proxy. */
  static async inFrontOf(databaseUrl: string): Promise<{ proxy: PgWireProxy; url: string }> {
    const url = new URL(databaseUrl);
    const proxy = await new PgWireProxy({ host: url.hostname, port: Number(url.port || 5432) }).start();
    url.hostname = '127.0.0.1';
    url.port = String(proxy.port);
    return { proxy, url: url.toString() };
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.port = (this.#server.address() as net.AddressInfo).port;
    return this;
  }

  get roundTrips(): number {
    return (this.counts.get('S') ?? 0) + (this.counts.get('Q') ?? 0);
  }

  reset(): void {
    this.counts.clear();
  }

  /** Cut every open connection, as a server restart or a network drop would. */
  dropAll(): void {
    for (const socket of this.#sockets) socket.destroy();
  }

  /** The database goes away: open connections are cut and new ones closed at once. */
  stopDatabase(): void {
    this.#down = true;
    this.dropAll();
  }

  /** The database is back. */
  startDatabase(): void {
    this.#down = false;
  }

  get isDown(): boolean {
    return this.#down;
  }

  /** Delay every chunk by this many milliseconds (0: none). */
  setDelay(ms: number): void {
    this.#delayMs = ms;
  }

  #accept(client: net.Socket): void {
    if (this.#down) {
      client.destroy();
      return;
    }
    const upstream =
      'path' in this.target ? net.connect(this.target.path) : net.connect(this.target.port, this.target.host);
    this.#sockets.add(client).add(upstream);
    let buffer: Buffer = Buffer.alloc(0);
    let startup = true;
    client.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      const split = splitMessages(buffer, startup);
      buffer = split.rest;
      startup = split.startup;
      for (const message of split.messages) {
        if (message.type) this.counts.set(message.type, (this.counts.get(message.type) ?? 0) + 1);
      }
      this.#later(() => upstream.write(chunk));
    });
    upstream.on('data', (chunk) => this.#later(() => client.write(chunk)));
    const close = () => {
      client.destroy();
      upstream.destroy();
      this.#sockets.delete(client);
      this.#sockets.delete(upstream);
    };
    client.on('close', close).on('error', close);
    upstream.on('close', close).on('error', close);
  }

  /** Order-preserving delay: chunks keep their order because every chunk waits the same time. */
  #later(fn: () => void): void {
    if (this.#delayMs <= 0) fn();
    else setTimeout(fn, this.#delayMs);
  }

  async stop(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
