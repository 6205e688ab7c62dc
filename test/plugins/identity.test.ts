import { ParticipantKind } from '@livekit/rtc-node';
import { describe, expect, it } from 'vitest';
import { IdentityResolutionError, resolveIdentity } from '../../plugins/index.js';

describe('resolveIdentity', () => {
  it('uses the participant identity by default, even when attributes claim something else', () => {
    const p = {
      identity: 'alice@example.com',
      kind: ParticipantKind.STANDARD,
      attributes: { 'sip.phoneNumber': '+15551234567', user: 'bob' },
    };
    expect(resolveIdentity(p)).toBe('alice@example.com');
    // A standard participant's attributes are never trusted, whatever the mode.
    expect(resolveIdentity(p, 'sip-caller')).toBe('alice@example.com');
  });

  it('keys SIP callers by the number the SIP service sets, when asked to', () => {
    const caller = {
      identity: 'sip_abc123',
      kind: ParticipantKind.SIP,
      attributes: { 'sip.phoneNumber': '+15551234567' },
    };
    expect(resolveIdentity(caller, 'sip-caller')).toBe('sip:+15551234567');
    expect(resolveIdentity(caller)).toBe('sip_abc123');
  });

  it('refuses a SIP caller without a number rather than guessing', () => {
    expect(() =>
      resolveIdentity({ identity: 'sip_x', kind: ParticipantKind.SIP, attributes: {} }, 'sip-caller'),
    ).toThrow(IdentityResolutionError);
    expect(() => resolveIdentity({ identity: '' })).toThrow(IdentityResolutionError);
  });
});
