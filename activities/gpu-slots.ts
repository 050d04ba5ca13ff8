// A GPU stage's slot on an endpoint, from the lease workflow every worker shares
// (workflows/gpu-slots.ts): taken before a job is submitted, renewed while it runs, given back
// when the stage is done with the endpoint.
import { Context, log } from '@temporalio/activity';
import { WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import { acquireSlotUpdate, gpuSlots, gpuSlotsWorkflowId, LEASE_MS, releaseSlotSignal } from '../workflows/gpu-slots.js';

/** How often a stage waiting for a slot asks again. */
const ASK_EVERY_MS = 1_000;
/** Renewed well within the lease. */
export const RENEW_EVERY_MS = LEASE_MS / 4;

/** The task queue of the pipelines (the lease workflows run there): the GPU queue without `-gpu`. */
const pipelineQueue = () => Context.current().info.taskQueue.replace(/-gpu$/, '');

export interface GpuSlot {
  endpointId: string;
  /** Renews the lease (the holder keeps its slot); call while the job runs. */
  renew(): Promise<void>;
  release(): Promise<void>;
}

/** Waits (heartbeating, cancellable) until `holder` holds one of the endpoint's `slots`. */
export async function acquireGpuSlot(endpointId: string, holder: string, slots: number, beat: () => void, versioned = false): Promise<GpuSlot> {
  const ctx = Context.current();
  const { client } = ctx;
  const taskQueue = pipelineQueue();
  const workflowId = gpuSlotsWorkflowId(taskQueue, endpointId);
  const ask = async (): Promise<boolean> => {
    try {
      await client.workflow.getHandle(workflowId).executeUpdate(acquireSlotUpdate, { args: [{ holder, slots }] });
      return true;
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) return false; // full: refused by the validator
      if (!(err instanceof WorkflowNotFoundError)) throw err;
      // The first stage on this endpoint starts the list; a racing twin's start is the same list.
      // Under Worker Versioning the list outlives any one build: it moves to the current version
      // instead of stalling pinned to one that was shut down.
      await client.workflow.start(gpuSlots, { workflowId, taskQueue, args: [{ holders: {} }], workflowIdConflictPolicy: 'USE_EXISTING', ...(versioned ? { versioningOverride: 'AUTO_UPGRADE' as const } : {}) });
      return ask();
    }
  };
  let waited = false;
  while (!(await ask())) {
    if (!waited) log.info('every GPU slot of the endpoint is in use; waiting for one', { endpointId, slots });
    waited = true;
    beat();
    await ctx.sleep(ASK_EVERY_MS);
  }
  return {
    endpointId,
    async renew() {
      if (!(await ask())) log.warn('the GPU slot lease lapsed and the endpoint is full again; the running job goes on', { endpointId, holder });
    },
    async release() {
      await client.workflow
        .getHandle(workflowId)
        .signal(releaseSlotSignal, holder)
        .catch((err: unknown) => log.warn('could not give the GPU slot back; its lease runs out instead', { endpointId, error: String(err) }));
    },
  };
}
