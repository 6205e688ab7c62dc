import dgram from 'node:dgram';
import net from 'node:net';

/**
 * Port helpers for starting several livekit-servers side by side (parallel test files, a dev
 * server already on 7880). Everything is on 127.0.0.1 because that is all the server binds.
 */

const HOST = '127.0.0.1';

/** A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export function isTcpPortFree(port: number, host = HOST): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

export function isUdpPortFree(port: number, host = HOST): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket('udp4');
    socket.unref();
    socket.once('error', () => {
      socket.close();
      resolve(false);
    });
    socket.bind(port, host, () => socket.close(() => resolve(true)));
  });
}

export interface LivekitPorts {
  /** HTTP/WebSocket. */
  port: number;
  /** ICE over TCP. livekit-server listens on it on every interface, so it is checked on 0.0.0.0. */
  rtcTcpPort: number;
  /** The single ICE/UDP port. */
  rtcUdpPort: number;
}

/**
 * Three consecutive free ports (HTTP, ICE/TCP, ICE/UDP) in the range the OS hands out, so a
 * server started on them collides neither with a dev server on 7880-7882 nor with another test
 * run. Free "a moment ago" only: the caller should retry on a bind failure.
 */
export async function freeLivekitPorts(attempts = 50): Promise<LivekitPorts> {
  for (let i = 0; i < attempts; i++) {
    const port = await freePort();
    if (port + 2 > 65535) continue;
    if ((await isTcpPortFree(port + 1, '0.0.0.0')) && (await isUdpPortFree(port + 2))) {
      return { port, rtcTcpPort: port + 1, rtcUdpPort: port + 2 };
    }
  }
  throw new Error(`no three consecutive free ports found on ${HOST} after ${attempts} attempts`);
}
