import { ParticipantKind } from '@livekit/rtc-node';

/** What the plugin needs of a participant; a RemoteParticipant from @livekit/rtc-node fits. */
export interface ParticipantLike {
  identity: string;
  kind?: ParticipantKind;
  attributes?: Record<string, string>;
}

/**
 * Which server-asserted fact names the user.
 * - `identity` (default): the participant identity, the JWT `sub` the LiveKit server signed; the
 *   client cannot change it.
 * - `sip-caller`: for SIP participants, the caller's number that LiveKit's SIP service sets in the
 *   `sip.phoneNumber` attribute (one user per phone number across calls, whatever identity the
 *   dispatch rule generated). Other participants still use their identity.
 */
export type IdentitySource = 'identity' | 'sip-caller';

export const SIP_PHONE_NUMBER_ATTRIBUTE = 'sip.phoneNumber';

export class IdentityResolutionError extends Error {
  override readonly name = 'IdentityResolutionError';
  readonly code = 'IDENTITY_UNRESOLVED';
}

/**
 * The identity to key a participant's memory by. Attributes are read only from SIP participants,
 * whose attributes the SIP service writes: a standard participant could set its own attributes
 * (with canUpdateOwnMetadata) and so impersonate another caller.
 */
export function resolveIdentity(participant: ParticipantLike, source: IdentitySource = 'identity'): string {
  if (source === 'sip-caller' && participant.kind === ParticipantKind.SIP) {
    const phone = participant.attributes?.[SIP_PHONE_NUMBER_ATTRIBUTE];
    if (!phone) {
      throw new IdentityResolutionError(
        `SIP participant ${JSON.stringify(participant.identity)} has no ${SIP_PHONE_NUMBER_ATTRIBUTE} attribute; ` +
          'use identitySource "identity" or check the SIP trunk configuration',
      );
    }
    return `sip:${phone}`;
  }
  if (!participant.identity) throw new IdentityResolutionError('the participant has an empty identity');
  return participant.identity;
}
