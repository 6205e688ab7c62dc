import { readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { RoomServiceClient } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LivekitServerError } from '../../scripts/livekit/errors.js';
import { startLivekitServerOnFreePorts } from '../../scripts/livekit/free-ports-server.js';
import { freeLivekitPorts } from '../../scripts/livekit/ports.js';
import { isLivekitServerUp, startLivekitServer, type LivekitServerHandle } from '../../scripts/livekit/server.js';

/**
 * A real livekit-server, started the way the e2e tests and `npm run livekit` start it. A first
 * run on a machine without the binary builds it with Go (about two minutes on two cores).
 * Without a server and without Go this fails, naming the ways to install one; it never skips.
 */
async function startOrExplain(): Promise<LivekitServerHandle> {
  try {
    return await startLivekitServerOnFreePorts({ onProgress: (line) => process.stderr.write(`[livekit] ${line}\n`) });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`The livekit tests need a real livekit-server (npm run livekit:install -- --help).\n${message}`, {
      cause: error,
    });
  }
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('a local livekit-server', () => {
  let server: LivekitServerHandle;
  let other: LivekitServerHandle | undefined;

  beforeAll(async () => {
    server = await startOrExplain();
  }, 15 * 60_000);

  afterAll(async () => {
    await Promise.all([server?.stop(), other?.stop()]);
  });

  it('answers its health check with 200 on loopback', async () => {
    expect(server.url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
    expect(server.httpUrl).toBe(server.url.replace('ws://', 'http://'));
    const response = await fetch(`${server.httpUrl}/`);
    expect(response.status).toBe(200);
    expect(await isLivekitServerUp(server.httpUrl)).toBe(true);
  });

  it('runs with the loopback configuration and the requested ports', async () => {
    const log = await readFile(server.logFile, 'utf8');
    const port = Number(new URL(server.httpUrl).port);
    expect(log).toContain('"nodeIP": "127.0.0.1"');
    expect(log).toContain('"bindAddresses": ["127.0.0.1"]');
    expect(log).toContain(`"portHttp": ${port}`);
    expect(log).toContain(`"rtc.portTCP": ${port + 1}`);
    expect(log).toContain(`"rtc.portUDP": {"Start":${port + 2}`);
  });

  it('creates and lists a room through the server API with devkey/secret', async () => {
    const rooms = new RoomServiceClient(server.httpUrl, server.apiKey, server.apiSecret);
    const name = `test-room-${process.pid}-${Date.now()}`;
    const created = await rooms.createRoom({ name, emptyTimeout: 10 });
    expect(created.name).toBe(name);
    expect((await rooms.listRooms()).map((room) => room.name)).toContain(name);
    expect((await rooms.listRooms([name])).map((room) => room.name)).toEqual([name]);
  });

  it('refuses wrong credentials', async () => {
    const rooms = new RoomServiceClient(server.httpUrl, 'devkey', 'not-the-secret');
    await expect(rooms.listRooms()).rejects.toThrow();
  });

  it('runs a second server beside the first without sharing rooms, deaf to LIVEKIT_* settings of the shell', async () => {
    // livekit-server reads these from the environment; LIVEKIT_CONFIG would even replace livekit.yaml.
    const shell = {
      LIVEKIT_CONFIG: 'bogus_key: 1',
      LIVEKIT_KEYS: 'devkey: wrong',
      NODE_IP: '10.9.9.9',
      LIVEKIT_LOG_LEVEL: 'error',
    };
    Object.assign(process.env, shell);
    try {
      other = await startOrExplain();
    } finally {
      for (const name of Object.keys(shell)) delete process.env[name];
    }
    expect(await readFile(other.logFile, 'utf8')).toContain('"nodeIP": "127.0.0.1"');
    expect(other.httpUrl).not.toBe(server.httpUrl);
    const name = `only-on-other-${process.pid}`;
    await new RoomServiceClient(other.httpUrl, other.apiKey, other.apiSecret).createRoom({ name });
    const onFirst = await new RoomServiceClient(server.httpUrl, server.apiKey, server.apiSecret).listRooms();
    expect(onFirst.map((room) => room.name)).not.toContain(name);
    await other.stop();
    expect(isProcessAlive(other.pid)).toBe(false);
  });

  it('says the port is taken instead of starting on top of a running server', async () => {
    const port = Number(new URL(server.httpUrl).port);
    const error = await startLivekitServer({ port }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LivekitServerError);
    expect(error).toMatchObject({ code: 'PORT_IN_USE' });
    expect((error as Error).message).toContain('a livekit-server is already running there');
  });

  it('reports a config error with the tail of the server log', async () => {
    // Parsing is strict: one unknown key stops the server (which then exits with code 0).
    const configPath = path.join(os.tmpdir(), `livekit-bad-${process.pid}.yaml`);
    await writeFile(configPath, 'port: 7880\nbogus_key: 1\n');
    const ports = await freeLivekitPorts();
    const error = await startLivekitServer({ ...ports, configPath })
      .catch((e: unknown) => e)
      .finally(() => rm(configPath, { force: true }));
    expect(error).toMatchObject({ code: 'START_FAILED' });
    expect((error as Error).message).toContain('field bogus_key not found');
  });

  it('stop() ends the process and the health check goes down', async () => {
    await server.stop();
    expect(isProcessAlive(server.pid)).toBe(false);
    expect(await isLivekitServerUp(server.httpUrl)).toBe(false);
    await server.stop(); // idempotent
  });
});
