import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMemory, type MemoryStore } from '../../memory/index.js';
import { tempDataDir } from '../support/backends.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A raw wire-protocol client, so the test decides exactly how a round trip is cut into writes. */
async function rawClient(
  socketPath: string,
): Promise<{ socket: net.Socket; received: () => string; clear: () => void }> {
  const socket = net.connect(socketPath);
  let received = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    received = Buffer.concat([received, chunk]);
  });
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(serialize.startup({ user: 'postgres', database: 'postgres' }));
  while (!received.includes(Buffer.from('Z\0\0\0\x05I'))) await sleep(10);
  return { socket, received: () => received.toString('latin1'), clear: () => (received = Buffer.alloc(0)) };
}

describe('embedded socket server', () => {
  let dataDir: string;
  let owner: MemoryStore;
  let socketPath: string;
  const clients: pg.Client[] = [];
  const pgClient = async () => {
    const client = new pg.Client({ host: dataDir, port: 5432, user: 'postgres', database: 'postgres' });
    await client.connect();
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    dataDir = tempDataDir('server');
    owner = await openMemory({ env: {}, dataDir, embeddedRole: 'owner' });
    socketPath = path.join(dataDir, '.s.PGSQL.5432');
  });
  afterAll(async () => {
    for (const client of clients) await client.end().catch(() => {});
    await owner?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('keeps a round trip whole when it arrives in pieces while another client queries', async () => {
    // Client A sends Parse+Bind, pauses, then Describe+Execute+Sync. Under per-message
    // multiplexing, B's round trip lands in the gap and takes over the unnamed portal.
    const a = await rawClient(socketPath);
    const b = await pgClient();
    a.clear();
    a.socket.write(Buffer.concat([serialize.parse({ text: "select 'A-only'::text as v" }), serialize.bind({})]));
    await sleep(50);
    const bResult = b.query('select $1::text as v', ['B-only']);
    await sleep(50);
    a.socket.write(Buffer.concat([serialize.describe({ type: 'P' }), serialize.execute({}), serialize.sync()]));
    expect((await bResult).rows).toEqual([{ v: 'B-only' }]);
    while (!a.received().includes('Z\0\0\0\x05I')) await sleep(10);
    expect(a.received()).toContain('A-only');
    expect(a.received()).not.toContain('B-only');
    expect(a.received()).not.toContain('does not exist');
    a.socket.destroy();
  });

  it('keeps a transaction to its client: nobody else runs inside it, and it rolls back when the client vanishes', async () => {
    const a = await pgClient();
    const b = await pgClient();
    await a.query('create table if not exists scratch (n int)');
    await a.query('begin');
    await a.query('insert into scratch values (1)');
    // B's statement waits for A's transaction to end instead of running inside it.
    let bDone = false;
    const bCount = b.query('select count(*)::int as n from scratch').then((r) => {
      bDone = true;
      return r.rows[0].n as number;
    });
    await sleep(100);
    expect(bDone).toBe(false);
    await a.query('rollback');
    expect(await bCount).toBe(0);

    // A client that dies inside a transaction leaves nothing open behind it.
    const c = await rawClient(socketPath);
    c.socket.write(serialize.query('begin; insert into scratch values (2)'));
    while (!c.received().includes('Z\0\0\0\x05T')) await sleep(10);
    c.socket.destroy();
    const after = await b.query('select count(*)::int as n from scratch');
    expect(after.rows[0].n).toBe(0);
    const status = await b.query('select 1 as ok');
    expect(status.rows).toEqual([{ ok: 1 }]);
  });

  it('serves many concurrent clients without mixing their results', async () => {
    const pool = new pg.Pool({ host: dataDir, port: 5432, user: 'postgres', database: 'postgres', max: 8 });
    try {
      const results = await Promise.all(
        Array.from({ length: 400 }, (_, i) => pool.query('select $1::int as n, $2::text as label', [i, `label-${i}`])),
      );
      results.forEach((result, i) => expect(result.rows).toEqual([{ n: i, label: `label-${i}` }]));
    } finally {
      await pool.end();
    }
  });
});
