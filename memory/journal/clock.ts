import { randomBytes } from 'node:crypto';

/**
 * Write clocks: "<15-digit milliseconds>.<10-digit sequence>.<writer id>", sortable as text. The
 * milliseconds are the moment the write was made; the sequence keeps one process's writes in order
 * within a millisecond (and if its clock steps back); the writer id breaks ties between processes.
 * The database keeps the write with the greatest clock, so replaying a journal after an outage
 * cannot let an older write override a newer one.
 */
const CLOCK_PATTERN = /^(\d{15})\.(\d{10})\.([A-Za-z0-9_-]{1,32})$/;
const MAX_SEQ = 9_999_999_999;

/**
 * A clock from another machine that is this far ahead of ours is not followed: a broken or forged
 * clock must not pin every later write of this process to a time that has not come yet. Hosts
 * whose clocks differ by hours are ordinary (a wrong time zone on a VM), so the bound is a day:
 * it catches the absurd (a year 2100 clock), not the skewed.
 */
export const MAX_CLOCK_DRIFT_MS = 24 * 60 * 60 * 1000;

/** Whether `text` is a write clock in the format above (nothing else is ever sent as one). */
export function isWriteClock(text: unknown): text is string {
  return typeof text === 'string' && CLOCK_PATTERN.test(text);
}

/**
 * A hybrid logical clock: physical milliseconds, pushed forward by the clocks this process has
 * seen (`observe`), so that a write made here after reading a row is never older than that row,
 * even if another machine's clock runs ahead of ours.
 */
export class WriteClock {
  readonly writer: string;
  #lastMs = 0;
  #seq = 0;

  constructor(writer: string = randomBytes(4).toString('hex')) {
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(writer))
      throw new TypeError(`writer id ${JSON.stringify(writer)} must be 1 to 32 letters, digits, _ or -`);
    this.writer = writer;
  }

  next(now: number = Date.now()): string {
    if (now > this.#lastMs) {
      this.#lastMs = now;
      this.#seq = 0;
    } else if (this.#seq >= MAX_SEQ) {
      // The sequence is exhausted within one millisecond: borrow the next millisecond.
      this.#lastMs += 1;
      this.#seq = 0;
    } else {
      this.#seq += 1;
    }
    return format(this.#lastMs, this.#seq, this.writer);
  }

  /**
   * Advance so that `next()` is after `clock` (a clock the database returned, or another writer's).
   * False, and nothing changes, when `clock` is not a write clock or is more than
   * MAX_CLOCK_DRIFT_MS ahead of `now`.
   */
  observe(clock: string, now: number = Date.now()): boolean {
    const match = typeof clock === 'string' ? CLOCK_PATTERN.exec(clock) : null;
    if (!match) return false;
    const ms = Number(match[1]);
    const seq = Number(match[2]);
    if (ms > now + MAX_CLOCK_DRIFT_MS) return false;
    if (ms > this.#lastMs) {
      this.#lastMs = ms;
      this.#seq = seq;
    } else if (ms === this.#lastMs && seq > this.#seq) {
      this.#seq = seq;
    }
    return true;
  }
}

function format(ms: number, seq: number, writer: string): string {
  return `${String(ms).padStart(15, '0')}.${String(seq).padStart(10, '0')}.${writer}`;
}

/** The time a clock was taken at. */
export function clockTime(clock: string): Date {
  return new Date(Number(clock.slice(0, 15)));
}

/** One clock for the whole process: every store in it shares the sequence. */
export const processClock = new WriteClock();
