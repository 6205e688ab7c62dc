import type { JournalOp } from './journal/journal.js';
import { isUnreachable, liveTransport, type StoreState } from './store-state.js';
import type { RpcTransport } from './transports/transport.js';

export type WriteOutcome<T> = { via: 'database'; result: T } | { via: 'journal'; clock: string };

/**
 * The one rule for every write: try the database; if it is unreachable (and this store keeps a
 * journal), append the write to the local journal, fsynced, with the clock of this moment. Any
 * other failure is the caller's to see. Either way the write is acknowledged only when durable.
 */
export async function writeOrJournal<T>(
  state: StoreState,
  online: (transport: RpcTransport) => Promise<T>,
  offline: (clock: string) => JournalOp,
): Promise<WriteOutcome<T>> {
  const transport = liveTransport(state);
  try {
    const result = await online(transport);
    // The database answers again: anything still waiting in the journal can go now.
    state.journal?.kick();
    return { via: 'database', result };
  } catch (error) {
    if (!state.journal || !isUnreachable(error)) throw error;
    const clock = state.clock.next();
    await state.journal.append(offline(clock));
    return { via: 'journal', clock };
  }
}
