/**
 * A FIFO mutex over the one PGlite backend. PGlite is a single PostgreSQL session: whoever holds
 * the gate owns that session, including any transaction it has open, so a socket client inside
 * BEGIN ... COMMIT keeps the gate across round trips and nobody else's statement can land inside
 * its transaction.
 */
export class Gate {
  #tail: Promise<void> = Promise.resolve();

  /** Wait for the gate; the returned function releases it (calling it twice is harmless). */
  acquire(): Promise<() => void> {
    let open!: () => void;
    const released = new Promise<void>((resolve) => {
      open = resolve;
    });
    const previous = this.#tail;
    this.#tail = previous.then(() => released);
    let done = false;
    return previous.then(() => () => {
      if (!done) {
        done = true;
        open();
      }
    });
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }
}
