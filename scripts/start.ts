/**
 * npm start: the worker against LIVEKIT_URL (default the local dev server). When that URL is on
 * this machine and nothing answers there, a local livekit-server is started first.
 */
import { runWorker } from '../agent/main.js';
import { DEFAULT_LIVEKIT_URL, loadWorkerConfig } from '../agent/config.js';
import { isLivekitServerUp, startLivekitServer, type LivekitServerHandle } from './livekit/server.js';

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(`Usage: npm start

Runs the LiveKit worker with per-user memory (explicit dispatch, agent name $LIVEKIT_AGENT_NAME,
default memory-agent). It connects to $LIVEKIT_URL (default ${DEFAULT_LIVEKIT_URL}); when that is a
local address and no server answers, it starts livekit-server with livekit.yaml (installing it
from source with Go on first use). Memory: $DATABASE_URL, else the embedded database in
$MEMORY_DATA_DIR (default .data/). Model: $OPENAI_API_KEY and/or $OPENAI_BASE_URL, $LLM_MODEL.
Then join with a token from \`npm run token -- --identity alice\`. Ctrl-C stops everything.
`);
  process.exit(0);
}

const say = (line: string) => process.stdout.write(`start: ${line}\n`);

let livekit: LivekitServerHandle | undefined;
try {
  const config = loadWorkerConfig();
  const url = new URL(config.livekit.url);
  const httpUrl = `${url.protocol === 'wss:' ? 'https:' : 'http:'}//${url.host}`;
  const local = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  if (local && !(await isLivekitServerUp(httpUrl))) {
    say(`no LiveKit server answers at ${config.livekit.url}; starting a local one with livekit.yaml...`);
    livekit = await startLivekitServer({ port: Number(url.port || 7880), onProgress: say });
    say(`livekit-server is up at ${livekit.url} (log: ${livekit.logFile})`);
  }
  const worker = await runWorker({ onProgress: say });
  say(`ready. Join with: npm run token -- --identity alice@example.com`);
  const stop = async () => {
    say('stopping...');
    await worker.close();
    await livekit?.stop();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
} catch (error) {
  process.stderr.write(`start: ${(error as Error).message}\n`);
  await livekit?.stop();
  process.exit(1);
}
