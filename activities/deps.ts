// What activities need from the world, passed in by worker.ts (and by tests).
import type { RunpodClient } from '../lib/runpod-client.js';
import type { Storage } from '../lib/s3.js';

export interface ActivityDeps {
  storage: Storage;
  /** `health` (optional) lets GPU stages say why a job waits: capacity, cold start, crashing workers;
   * `statusSync` (optional) waits for a job with a long-poll instead of polling. */
  runpod: Pick<RunpodClient, 'run' | 'status' | 'cancel'> & Partial<Pick<RunpodClient, 'health' | 'statusSync'>>;
  /** How often a GPU job's status is polled. */
  pollIntervalMs: number;
  /**
   * When set, wait for a GPU job with /status-sync long-polls of this many ms instead of polling:
   * completion is seen at once and a running job costs 60 000 / statusWaitMs calls a minute
   * (bench/PROFILE.md); progress (step, loss, queue state) then refreshes at this pace.
   */
  statusWaitMs?: number;
  /** Checkpoint cadence and segment length of training jobs (defaults: 50 steps, 480 s). */
  training?: { checkpointEvery: number; segmentSeconds: number };
  /** The captioner the endpoint's GPU worker runs (its LORAFLOW_CAPTIONER): cached captions of
   * this captioner are reused instead of captioning again. Unset: no reuse. */
  captioner?: string;
  /** Price of one GPU hour (LORAFLOW_GPU_PRICE_PER_HOUR) for GPUs not in `gpuPrices`. */
  gpuPricePerHour?: number;
  /** Price per hour by GPU type (LORAFLOW_GPU_PRICES), matched against the device each job reports. */
  gpuPrices?: Record<string, number>;
  /** The endpoint's GPU type (LORAFLOW_GPU_TYPE): the price of jobs that report no device. */
  gpuType?: string;
  /** Allow dataset URLs on loopback/private addresses (local development only). */
  allowPrivateUrls?: boolean;
  /** Pushing published LoRAs to the Hugging Face Hub (activities/hub.ts); absent when HF_TOKEN is unset. */
  hub?: HubDeps;
}

export interface HubDeps {
  /** HF_TOKEN: never logged, returned or put in an error message. */
  token: string;
  /** LORAFLOW_HF_ENDPOINT, without a trailing slash. */
  endpoint: string;
  /** LORAFLOW_HF_NAMESPACE; unset: the token's own user. */
  namespace?: string;
  /** LORAFLOW_HF_REPO: `<namespace>/<repo>` containing `{name}`. */
  repoTemplate?: string;
  /** LORAFLOW_HF_PRIVATE: visibility of repos it creates. */
  private: boolean;
  /** LORAFLOW_HF_BASE_MODELS: the worker's base model names → Hub model ids. */
  baseModels?: Record<string, string>;
}
