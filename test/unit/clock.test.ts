import { describe, expect, it } from 'vitest';
import { MAX_CLOCK_DRIFT_MS, WriteClock, isWriteClock } from '../../memory/journal/index.js';

describe('WriteClock is a hybrid logical clock', () => {
  it('keeps the format and checks it', () => {
    const clock = new WriteClock('w1');
    const c = clock.next(1_700_000_000_000);
    expect(c).toBe('001700000000000.0000000000.w1');
    expect(isWriteClock(c)).toBe(true);
    for (const bad of [
      '',
      '9999',
      '1700000000000.0.w1',
      '001700000000000.0000000000.',
      '001700000000000.0000000000.a b',
      42,
      null,
    ])
      expect(isWriteClock(bad)).toBe(false);
  });

  it('after observe(), next() is never behind the newest clock seen, even with our clock behind', () => {
    const clock = new WriteClock('aaaa');
    const now = 1_700_000_000_000;
    const seen = `${String(now + 60_000).padStart(15, '0')}.0000000007.zzzz`; // another machine, a minute ahead
    expect(clock.observe(seen, now)).toBe(true);
    const next = clock.next(now);
    expect(next > seen).toBe(true);
    expect(next).toBe(`${String(now + 60_000).padStart(15, '0')}.0000000008.aaaa`);
    expect(clock.next(now + 1) > next).toBe(true); // still monotonic
    expect(clock.next(now + 120_000)).toBe(`${String(now + 120_000).padStart(15, '0')}.0000000000.aaaa`); // physical time again
  });

  it('ignores an older clock, a malformed one, and one too far in the future', () => {
    const clock = new WriteClock('w');
    const now = 1_700_000_000_000;
    const first = clock.next(now);
    expect(clock.observe(`${String(now - 5).padStart(15, '0')}.0000000099.x`, now)).toBe(true);
    expect(clock.next(now) > first).toBe(true);
    expect(clock.observe('not a clock', now)).toBe(false);
    const far = `${String(now + MAX_CLOCK_DRIFT_MS + 1).padStart(15, '0')}.0000000000.x`;
    expect(clock.observe(far, now)).toBe(false);
    expect(clock.next(now) < far).toBe(true);
  });
});
