import { randomBytes } from 'node:crypto';

/**
 * Write clocks: "<15-digit milliseconds>.<10-digit sequence>.<writer id>", sortable as text. The
 * milliseconds are the moment the write was made; the sequence keeps one process's writes in order
 * within a millisecond (and if its clock steps back); the writer id breaks ties between processes.
 * The database keeps the write with the greatest clock, so replaying a journal after an outage
 * cannot let an older write override a newer one.
 */
export class WriteClock {
  readonly writer: string;
  #lastMs = 0;
  #seq = 0;

  constructor(writer: string = randomBytes(4).toString('hex')) {
    this.writer = writer;
  }

  /**
   * A hybrid logical clock: after seeing a clock (from the database), the next one is later, even
   * if this host's wall clock is behind. A journaled write made after an acknowledged online write
   * must not lose to it on replay because another host assigned that write a later time.
   */
  observe(clock: string): void {
    const ms = Number(clock.slice(0, 15));
    const seq = Number(clock.slice(16, 26));
    if (!Number.isSafeInteger(ms) || !Number.isSafeInteger(seq)) return;
    if (ms > this.#lastMs || (ms === this.#lastMs && seq > this.#seq)) {
      this.#lastMs = ms;
      this.#seq = seq;
    }
  }

  next(now: number = Date.now()): string {
    if (now > this.#lastMs) {
      this.#lastMs = now;
      this.#seq = 0;
    } else {
      this.#seq += 1;
    }
    return `${String(this.#lastMs).padStart(15, '0')}.${String(this.#seq).padStart(10, '0')}.${this.writer}`;
  }
}

/** The time a clock was taken at. */
export function clockTime(clock: string): Date {
  return new Date(Number(clock.slice(0, 15)));
}

/** One clock for the whole process: every store in it shares the sequence. */
export const processClock = new WriteClock();
