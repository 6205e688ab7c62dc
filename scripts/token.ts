/**
 * npm run token -- --identity alice [--room R]: a join token that dispatches the memory agent.
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { AgentConfigError, DEFAULT_AGENT_NAME, DEFAULT_LIVEKIT_URL } from '../agent/config.js';
import { TENANT_PATTERN } from '../memory/index.js';
import { createJoinToken } from './lib/token.js';

const HELP = `Usage: npm run token -- --identity <identity> [options]

Prints a LiveKit join token (and the server URL) for a participant, with the memory agent
dispatched into the room. Use it in any LiveKit client, LiveKit Meet (the printed link) or the
Agents Playground (Settings: URL and token).

Options:
  --identity <id>     the participant identity: the memory is keyed by it (required)
  --room <name>       room name (default: a fresh one; dispatch only happens when the join creates the room)
  --agent-name <n>    agent to dispatch (default: $LIVEKIT_AGENT_NAME, else ${DEFAULT_AGENT_NAME})
  --tenant <tenant>   whose settings the agent applies (sets the dispatch metadata to {"tenant": ...})
  --metadata <text>   dispatch metadata for the job (instead of --tenant)
  --ttl <duration>    token lifetime (default 1h)
  --json              print JSON
  -h, --help          this text

Environment: LIVEKIT_URL (default ${DEFAULT_LIVEKIT_URL}), LIVEKIT_API_KEY (devkey), LIVEKIT_API_SECRET (secret).
`;

try {
  const { values } = parseArgs({
    options: {
      identity: { type: 'string' },
      room: { type: 'string' },
      'agent-name': { type: 'string' },
      metadata: { type: 'string' },
      tenant: { type: 'string' },
      ttl: { type: 'string', default: '1h' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  if (!values.identity)
    throw new AgentConfigError('--identity is required (the participant identity, e.g. alice@example.com)');
  if (values.tenant !== undefined && values.metadata !== undefined)
    throw new AgentConfigError('give --tenant or --metadata, not both');
  if (values.tenant !== undefined && !TENANT_PATTERN.test(values.tenant))
    throw new AgentConfigError(`--tenant ${JSON.stringify(values.tenant)} is invalid: use letters, digits, _ . : or -`);
  const metadata = values.tenant !== undefined ? JSON.stringify({ tenant: values.tenant }) : values.metadata;
  const url = process.env.LIVEKIT_URL || DEFAULT_LIVEKIT_URL;
  const room = values.room ?? `memory-${randomBytes(4).toString('hex')}`;
  const agentName = values['agent-name'] ?? (process.env.LIVEKIT_AGENT_NAME || DEFAULT_AGENT_NAME);
  const token = await createJoinToken({
    apiKey: process.env.LIVEKIT_API_KEY || 'devkey',
    apiSecret: process.env.LIVEKIT_API_SECRET || 'secret',
    identity: values.identity,
    room,
    agentName,
    metadata,
    ttl: values.ttl,
  });
  const meet = `https://meet.livekit.io/custom?liveKitUrl=${encodeURIComponent(url)}&token=${encodeURIComponent(token)}`;
  if (values.json) {
    process.stdout.write(
      `${JSON.stringify({ url, room, identity: values.identity, agentName, token, meet }, null, 2)}\n`,
    );
  } else {
    process.stdout.write(
      `LIVEKIT_URL=${url}\nROOM=${room}\nIDENTITY=${values.identity}\nAGENT=${agentName}\nTOKEN=${token}\n\nLiveKit Meet: ${meet}\n`,
    );
  }
} catch (error) {
  process.stderr.write(`token: ${(error as Error).message}\n`);
  process.exit(2);
}
