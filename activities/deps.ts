// What activities need from the world, passed in by worker.ts (and by tests).
import type { RunpodClient } from '../lib/runpod-client.js';
import type { Storage } from '../lib/s3.js';

export interface ActivityDeps {
  storage: Storage;
  /** `health` (optional) lets GPU stages say why a job waits: capacity, cold start, crashing workers. */
  runpod: Pick<RunpodClient, 'run' | 'status' | 'cancel'> & Partial<Pick<RunpodClient, 'health'>>;
  /** How often a GPU job's status is polled. */
  pollIntervalMs: number;
  /** Checkpoint cadence and segment length of training jobs (defaults: 50 steps, 480 s). */
  training?: { checkpointEvery: number; segmentSeconds: number };
  /** The captioner the endpoint's GPU worker runs (its LORAFLOW_CAPTIONER): cached captions of
   * this captioner are reused instead of captioning again. Unset: no reuse. */
  captioner?: string;
  /** Price of one GPU hour on the endpoint (LORAFLOW_GPU_PRICE_PER_HOUR), for each run's cost. */
  gpuPricePerHour?: number;
  /** Allow dataset URLs on loopback/private addresses (local development only). */
  allowPrivateUrls?: boolean;
}
