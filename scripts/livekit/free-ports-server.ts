import { isLivekitServerError } from './errors.js';
import { freeLivekitPorts } from './ports.js';
import { startLivekitServer, type LivekitServerHandle, type StartLivekitServerOptions } from './server.js';

/**
 * A livekit-server on three fresh free ports, for tests: parallel runs and a dev server on
 * 7880-7882 never collide. Ports are free only "a moment ago", so a start that loses a bind race
 * ("address already in use") is retried on new ports.
 */
export async function startLivekitServerOnFreePorts(
  options: Omit<StartLivekitServerOptions, 'port' | 'rtcTcpPort' | 'rtcUdpPort'> = {},
  attempts = 3,
): Promise<LivekitServerHandle> {
  for (let attempt = 1; ; attempt++) {
    const ports = await freeLivekitPorts();
    try {
      return await startLivekitServer({ ...options, ...ports });
    } catch (error) {
      const lostRace =
        (isLivekitServerError(error, 'START_FAILED') && error.message.includes('address already in use')) ||
        isLivekitServerError(error, 'PORT_IN_USE');
      if (!lostRace || attempt >= attempts) throw error;
    }
  }
}
