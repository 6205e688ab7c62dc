import { Combiner, checkGroupCommit, type CombinerLimits, type GroupCommit } from './combiner.js';
import { rpc, type RpcArgs, type RpcResult } from './rpc.js';
import { RecentWrites } from './store-state.js';
import { jsonArg } from './transports/call.js';
import type { RpcTransport } from './transports/transport.js';

/**
 * The two calls that group commit combines: online stores (memory_store_batch) and plain reads
 * (memory_retrieve_batch). Items are combined only with items for the same transport; the
 * deployment's arguments (consent default, cap, retention) are the store's own and the same for
 * every item of it.
 */

export interface StoreItem {
  transport: RpcTransport;
  args: RpcArgs['memory_store'];
}
export type StoreAnswer = RpcResult<'memory_store'>;

export interface RetrieveItem {
  transport: RpcTransport;
  args: RpcArgs['memory_retrieve'];
}

const slot = ({ args: a }: { args: { p_user_id: string; p_category: string; p_key: string } }) =>
  RecentWrites.slot(a.p_user_id, a.p_category, a.p_key);

export function storeCombiner(options: CombinerLimits): Combiner<StoreItem, StoreAnswer> {
  return new Combiner<StoreItem, StoreAnswer>(options, {
    group: (item) => item.transport,
    one: (item) => rpc(item.transport, 'memory_store', item.args),
    many: (items) => {
      const { transport, args } = items[0]!;
      return rpc(transport, 'memory_store_batch', {
        p_items: jsonArg(
          items.map(({ args: a }) => ({
            user_id: a.p_user_id,
            category: a.p_category,
            key: a.p_key,
            value: a.p_value,
            expires_at: a.p_expires_at,
          })),
        ),
        p_consent: args.p_consent,
        p_max_per_user: args.p_max_per_user,
        p_retention_days: args.p_retention_days,
      });
    },
    slot,
  });
}

export function retrieveCombiner(options: CombinerLimits): Combiner<RetrieveItem, string | null> {
  return new Combiner<RetrieveItem, string | null>(options, {
    group: (item) => item.transport,
    one: (item) => rpc(item.transport, 'memory_retrieve', item.args),
    many: (items) => {
      const { transport, args } = items[0]!;
      return rpc(transport, 'memory_retrieve_batch', {
        p_items: jsonArg(items.map(({ args: a }) => ({ user_id: a.p_user_id, category: a.p_category, key: a.p_key }))),
        p_retention_days: args.p_retention_days,
        p_touch: args.p_touch,
      });
    },
    slot,
  });
}

/** A store's two combiners; undefined when group commit is off. */
export interface GroupCommitters {
  stores: Combiner<StoreItem, StoreAnswer>;
  reads: Combiner<RetrieveItem, string | null>;
}

export function groupCommitters(options: GroupCommit): GroupCommitters {
  const { storesInFlight, readsInFlight, maxBatch } = checkGroupCommit(options);
  return {
    stores: storeCombiner({ inFlight: storesInFlight, maxBatch }),
    reads: retrieveCombiner({ inFlight: readsInFlight, maxBatch }),
  };
}
