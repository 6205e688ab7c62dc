import { AccessToken, RoomAgentDispatch, RoomConfiguration } from 'livekit-server-sdk';

export interface JoinTokenOptions {
  apiKey: string;
  apiSecret: string;
  identity: string;
  room: string;
  /** The agent to dispatch into the room (explicit dispatch by agent name); none when absent. */
  agentName?: string;
  /** Dispatch metadata handed to the job (ctx.job.metadata). */
  metadata?: string;
  name?: string;
  ttl?: string;
}

/**
 * A participant token that dispatches the agent. The server applies the token's room
 * configuration only when this join creates the room, so use a fresh room name per session (or
 * dispatch with AgentDispatchClient.createDispatch).
 */
export async function createJoinToken(options: JoinTokenOptions): Promise<string> {
  const token = new AccessToken(options.apiKey, options.apiSecret, {
    identity: options.identity,
    name: options.name ?? options.identity,
    ttl: options.ttl ?? '1h',
  });
  // No canUpdateOwnMetadata: a participant must not be able to rewrite its own attributes.
  token.addGrant({ roomJoin: true, room: options.room, canPublish: true, canSubscribe: true, canPublishData: true });
  if (options.agentName !== undefined) {
    token.roomConfig = new RoomConfiguration({
      agents: [new RoomAgentDispatch({ agentName: options.agentName, metadata: options.metadata ?? '' })],
    });
  }
  return token.toJwt();
}
