// GPU slots of one endpoint, shared by every Temporal worker: a lease workflow (one per task queue
// and endpoint) holds the list of GPU stages that may keep a job on the endpoint.
//
// Why a workflow: Temporal caps concurrency only per worker process (its activity slots); the
// task queue's rate limit bounds starts per second, not jobs at once. A workflow is one
// serialised, durable owner of the count, so two workers can never both take the last slot (S3
// leases would need a conditional delete to take back a dead holder's slot, which not every
// store has). Each worker process sends its stages' requests together in one `slots` Update at a
// time (activities/gpu-slots.ts): hundreds of concurrent Updates on one workflow abort each
// other's speculative workflow tasks and barely progress. Its validator refuses a batch with
// nothing to grant or give back: a refused Update leaves nothing in history, so stages waiting for
// a slot ask again cheaply, and no handler is left blocked when the lease list continues as new.
// `acquire` and `release` (one holder each) stay for histories recorded before the batch.
//
// A holder is a run's GPU stage (`runKey/stage`): a retried activity asks again under the same
// name and keeps its slot. Holders renew their lease while their job runs; one not renewed for
// LEASE_MS (its run was terminated, its worker is gone for good) is dropped.
import { allHandlersFinished, condition, continueAsNew, defineQuery, defineSignal, defineUpdate, setHandler, workflowInfo } from '@temporalio/workflow';

export interface SlotRequest {
  holder: string;
  /** The most holders at once (LORAFLOW_MAX_GPU_JOBS of the worker asking). */
  slots: number;
}

export interface GpuSlotsState {
  /** holder → when it last acquired or renewed (ms since epoch, workflow time). */
  holders: Record<string, number>;
}

/** A holder that has not renewed for this long has lost its slot. */
export const LEASE_MS = 10 * 60_000;

/** One worker process's requests at once: slots to take (or renew) and slots to give back. */
export interface SlotBatch {
  acquire: SlotRequest[];
  release: string[];
}

export const slotsUpdate = defineUpdate<string[], [SlotBatch]>('slots');
export const acquireSlotUpdate = defineUpdate<true, [SlotRequest]>('acquire');
export const releaseSlotSignal = defineSignal<[string]>('release');
export const slotHoldersQuery = defineQuery<string[]>('holders');

/** The lease workflow's id for an endpoint of a task queue. */
export const gpuSlotsWorkflowId = (taskQueue: string, endpointId: string) => `loraflow-gpu-slots-${taskQueue}-${endpointId}`;

export async function gpuSlots(state: GpuSlotsState = { holders: {} }): Promise<void> {
  const holders = new Map(Object.entries(state.holders));
  const expire = () => {
    for (const [h, at] of holders) if (Date.now() - at > LEASE_MS) holders.delete(h);
  };
  const live = () => [...holders].filter(([, at]) => Date.now() - at <= LEASE_MS).length;
  /** Whether `r` may hold a slot now: it holds one already, or one is free. */
  const grantable = (r: SlotRequest, used: number) => holders.has(r.holder) || used < r.slots;
  setHandler(
    slotsUpdate,
    ({ acquire, release }) => {
      for (const h of release) holders.delete(h);
      expire();
      const granted: string[] = [];
      for (const r of acquire) {
        if (!grantable(r, holders.size)) continue;
        holders.set(r.holder, Date.now());
        granted.push(r.holder);
      }
      return granted;
    },
    {
      validator: ({ acquire, release }: SlotBatch) => {
        const used = live() - release.filter((h) => holders.has(h)).length;
        if (!release.length && !acquire.some((r) => grantable(r, used))) throw new Error('all GPU slots are in use');
      },
    },
  );
  setHandler(
    acquireSlotUpdate,
    ({ holder }) => {
      expire();
      holders.set(holder, Date.now());
      return true as const;
    },
    {
      validator: ({ holder, slots }) => {
        if (!holders.has(holder) && live() >= slots) throw new Error(`all ${slots} GPU slots are in use`);
      },
    },
  );
  setHandler(releaseSlotSignal, (holder) => void holders.delete(holder));
  setHandler(slotHoldersQuery, () => [...holders.keys()]);
  await condition(() => workflowInfo().continueAsNewSuggested);
  await condition(allHandlersFinished);
  await continueAsNew<typeof gpuSlots>({ holders: Object.fromEntries(holders) });
}
