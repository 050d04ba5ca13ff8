// How big a chaos run is and how many faults it injects: the short mode `make test` runs, and the full one.

export interface ChaosOptions {
  pipelines: number;
  steps: number;
  msPerStep: number;
  checkpointEvery: number;
  s3DownMs: number;
  workerKills: number;
  cancels: number;
  gpuCrashes: number;
  timeoutMs: number;
  say?: (line: string) => void;
}

export const QUICK: ChaosOptions = { pipelines: 8, steps: 40, msPerStep: 100, checkpointEvery: 5, s3DownMs: 10_000, workerKills: 2, cancels: 2, gpuCrashes: 2, timeoutMs: 8 * 60_000 };
export const FULL: ChaosOptions = { pipelines: 24, steps: 60, msPerStep: 100, checkpointEvery: 5, s3DownMs: 30_000, workerKills: 6, cancels: 4, gpuCrashes: 5, timeoutMs: 14 * 60_000 };
