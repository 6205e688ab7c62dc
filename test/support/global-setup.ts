import { ensureLivekitServer } from '../../scripts/livekit/install.js';

/**
 * Before any test file runs: find or build livekit-server once (a first build takes about two
 * minutes), so that no test's own timeout has to cover it. Without Go and without a server this
 * fails here, saying how to install one; no test skips.
 */
export default async function setup(): Promise<void> {
  const binary = await ensureLivekitServer({
    onProgress: (line) => process.stdout.write(`[livekit-server] ${line}\n`),
  });
  process.stdout.write(`[livekit-server] using ${binary}\n`);
}
