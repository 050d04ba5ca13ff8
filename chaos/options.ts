// How big a chaos run is and which faults it injects: the short mode `make test` runs, the full
// one, and the mutation check that proves the audit bites.

/** Every drill the suite knows (chaos/drills.ts). */
export const DRILLS = [
  'gpu-kill', // a GPU worker killed mid-training: the service retries the job under its id
  'result-crash', // a GPU worker dies while posting a finished training's result (the result is lost)
  'api-storm', // RunPod answers 429 and 503, slowly
  'error-after-create', // /run creates the job, then answers 503: the client submits a duplicate
  'lost-claim-reply', // the store applies a claim PUT but its answer is lost
  'no-conditional-writes', // a worker started on a store without conditional writes must refuse to run
  's3-blackhole', // S3 accepts connections and never answers
  's3-down', // S3 stopped, then back
  'temporal-restart-in-long-poll', // the Temporal server killed while a GPU stage holds a /status-sync open
  'worker-kill', // kill -9 of the Temporal worker
  'outage-past-retention', // the Temporal worker down for longer than RunPod keeps results
  'cancel', // a pipeline cancelled at a random moment
  'cancel-in-429-storm', // a cancel while every /cancel is refused for a while
  'retry-cancelled-request', // the same request started again after it was cancelled
  'no-capacity', // the first endpoint has no GPU free: queued jobs move to the second endpoint
] as const;
export type DrillName = (typeof DRILLS)[number];

export interface ChaosOptions {
  pipelines: number;
  steps: number;
  msPerStep: number;
  checkpointEvery: number;
  /** Trainings hand over to a new job after this long: every training crosses segments. */
  segmentSeconds: number;
  /** How long the endpoint keeps a finished job's result (RunPod: 30 min). */
  resultTtlMs: number;
  s3DownMs: number;
  s3BlackholeMs: number;
  /** How often each repeatable drill fires. */
  workerKills: number;
  cancels: number;
  gpuKills: number;
  /** Only these drills (default: all). */
  drills?: DrillName[];
  /** The mutation check: the GPU workers ignore claims, and the audit must say so. */
  breakClaims?: boolean;
  timeoutMs: number;
  say?: (line: string) => void;
}

export const QUICK: ChaosOptions = {
  pipelines: 8,
  steps: 40,
  msPerStep: 100,
  checkpointEvery: 5,
  segmentSeconds: 1.5,
  resultTtlMs: 4_000,
  s3DownMs: 8_000,
  s3BlackholeMs: 6_000,
  workerKills: 2,
  cancels: 1,
  gpuKills: 2,
  timeoutMs: 8 * 60_000,
};

export const FULL: ChaosOptions = { ...QUICK, pipelines: 24, steps: 60, s3DownMs: 30_000, s3BlackholeMs: 20_000, workerKills: 6, cancels: 3, gpuKills: 5, timeoutMs: 15 * 60_000 };

/** A few pipelines, duplicates made by the service, and GPU workers that skip the claim. */
export const MUTATION: ChaosOptions = { ...QUICK, pipelines: 3, drills: ['error-after-create'], breakClaims: true, timeoutMs: 4 * 60_000 };
