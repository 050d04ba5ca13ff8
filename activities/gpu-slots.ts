// A GPU stage's slot on an endpoint, from the lease workflow every worker shares
// (workflows/gpu-slots.ts): taken before a job is submitted, renewed while it runs, given back
// when the stage is done with the endpoint. A worker process's stages ask together: their requests
// wait while one batch is with the lease workflow and go in the next (one Update in flight per
// process and endpoint, however many stages wait).
import { Context, log } from '@temporalio/activity';
import { type Client, WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import { gpuSlots, gpuSlotsWorkflowId, LEASE_MS, type SlotBatch, slotsUpdate } from '../workflows/gpu-slots.js';

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

interface Pending {
  slots?: number;
  resolve: (granted: boolean) => void;
  reject: (err: unknown) => void;
}

/** One process's requests to one lease workflow, sent a batch at a time. */
class SlotRequests {
  private acquire = new Map<string, Pending[]>();
  private release = new Map<string, Pending[]>();
  private busy = false;

  constructor(private readonly send: (batch: SlotBatch) => Promise<string[]>) {}

  /** True when `holder` holds one of `slots` (taken now or renewed), false when they are all in use. */
  ask(holder: string, slots: number): Promise<boolean> {
    return this.add(this.acquire, holder, slots);
  }

  giveBack(holder: string): Promise<void> {
    // A stage that gives its slot back has stopped asking.
    for (const p of this.acquire.get(holder) ?? []) p.resolve(false);
    this.acquire.delete(holder);
    return this.add(this.release, holder).then(() => undefined);
  }

  private add(into: Map<string, Pending[]>, holder: string, slots?: number): Promise<boolean> {
    return new Promise((resolve, reject) => {
      into.set(holder, [...(into.get(holder) ?? []), { ...(slots !== undefined ? { slots } : {}), resolve, reject }]);
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.busy || (!this.acquire.size && !this.release.size)) return;
    this.busy = true;
    const [acquire, release] = [this.acquire, this.release];
    this.acquire = new Map();
    this.release = new Map();
    const batch: SlotBatch = {
      acquire: [...acquire].map(([holder, waiting]) => ({ holder, slots: Math.min(...waiting.map((p) => p.slots!)) })),
      release: [...release.keys()],
    };
    const settle = (map: Map<string, Pending[]>, fn: (p: Pending, holder: string) => void) => {
      for (const [holder, waiting] of map) for (const p of waiting) fn(p, holder);
    };
    try {
      const granted = new Set(await this.send(batch));
      settle(acquire, (p, holder) => p.resolve(granted.has(holder)));
      settle(release, (p) => p.resolve(true));
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) settle(acquire, (p) => p.resolve(false)); // full: refused by the validator
      else settle(acquire, (p) => p.reject(err));
      settle(release, (p) => p.reject(err));
    } finally {
      this.busy = false;
      void this.flush();
    }
  }
}

/** Per client (one per worker process) and lease workflow. */
const requestsOf = new WeakMap<Client, Map<string, SlotRequests>>();

export function slotRequests(client: Client, workflowId: string, taskQueue: string, versioned: boolean): SlotRequests {
  let byWorkflow = requestsOf.get(client);
  if (!byWorkflow) requestsOf.set(client, (byWorkflow = new Map()));
  let requests = byWorkflow.get(workflowId);
  if (!requests) {
    const send = async (batch: SlotBatch): Promise<string[]> => {
      try {
        return await client.workflow.getHandle(workflowId).executeUpdate(slotsUpdate, { args: [batch] });
      } catch (err) {
        if (!(err instanceof WorkflowNotFoundError)) throw err;
        // The first stage on this endpoint starts the list; a racing twin's start is the same list.
        // Under Worker Versioning the list outlives any one build: it moves to the current version
        // instead of stalling pinned to one that was shut down.
        await client.workflow.start(gpuSlots, { workflowId, taskQueue, args: [{ holders: {} }], workflowIdConflictPolicy: 'USE_EXISTING', ...(versioned ? { versioningOverride: 'AUTO_UPGRADE' as const } : {}) });
        return send(batch);
      }
    };
    byWorkflow.set(workflowId, (requests = new SlotRequests(send)));
  }
  return requests;
}

/**
 * Waits (heartbeating, cancellable) until `holder` holds one of the endpoint's `slots`; `beat(true)`
 * while it has been refused, so `loraflow status` can say why the stage does nothing yet.
 */
export async function acquireGpuSlot(endpointId: string, holder: string, slots: number, beat: (waiting: boolean) => void, versioned = false): Promise<GpuSlot> {
  const ctx = Context.current();
  const taskQueue = pipelineQueue();
  const requests = slotRequests(ctx.client, gpuSlotsWorkflowId(taskQueue, endpointId), taskQueue, versioned);
  // The answer can wait behind a burst of workflow tasks (the lease list runs on the pipelines'
  // queue): heartbeat meanwhile, or a thousand stages starting at once all time out.
  let waited = false;
  const ask = async () => {
    const keepAlive = setInterval(() => beat(waited), ASK_EVERY_MS * 5);
    try {
      return await requests.ask(holder, slots);
    } finally {
      clearInterval(keepAlive);
    }
  };
  while (!(await ask())) {
    if (!waited) log.info('every GPU slot of the endpoint is in use; waiting for one', { endpointId, slots });
    waited = true;
    beat(true);
    await ctx.sleep(ASK_EVERY_MS);
  }
  return {
    endpointId,
    async renew() {
      if (!(await ask())) log.warn('the GPU slot lease lapsed and the endpoint is full again; the running job goes on', { endpointId, holder });
    },
    async release() {
      await requests.giveBack(holder).catch((err: unknown) => log.warn('could not give the GPU slot back; its lease runs out instead', { endpointId, error: String(err) }));
    },
  };
}
