// What a run's GPU jobs cost, and the per-run budget that stops them. Each job is priced by the GPU
// it ran on: the device the worker reported (metrics.device, e.g. "cuda:NVIDIA H100 80GB HBM3"),
// else the endpoint's configured GPU type, looked up in the price table (lib/pricing.ts); an
// endpoint of LORAFLOW_ENDPOINTS with its own price is billed at that price.
import { ApplicationFailure } from '@temporalio/activity';
import type { GpuUsage } from '../contract/pipeline.js';
import { endpointPrice } from '../lib/endpoints.js';
import { costOf, priceFor, round6 } from '../lib/pricing.js';
import { RunpodJobNotFound } from '../lib/runpod-client.js';
import type { ActivityDeps, GpuEndpoint } from './deps.js';
import { jobRecords } from './gpu-records.js';
import { type GpuJobTiming, timingOf } from './gpu-result.js';

/**
 * GPU time of every job the run recorded (the caption job, segments, jobs lost to crashed
 * workers, those of earlier attempts and those found through a claim). A job's final timing comes
 * from its record (written when it was first seen: the endpoint purges it about 30 minutes
 * later), else from what this attempt saw, else from the endpoint; a job that no source times is
 * counted in `unknownJobs`.
 */
export async function gpuUsage(deps: Pick<ActivityDeps, 'storage' | 'runpod' | 'pricing' | 'endpoints'>, runKey: string, seen: GpuJobTiming[] = [], except?: string): Promise<GpuUsage> {
  const known = new Map(seen.map((t) => [t.gpuJobId, t]));
  const jobs: GpuUsage['jobs'] = [];
  for (const record of await jobRecords(deps, runKey)) {
    const { gpuJobId } = record;
    if (gpuJobId === except) continue;
    const f = record.final;
    const recorded: GpuJobTiming | undefined = f && {
      gpuJobId,
      status: f.status,
      ...(f.gpu ? { gpu: f.gpu } : {}),
      ...(f.delayMs !== undefined ? { delayMs: f.delayMs } : {}),
      ...(f.executionMs !== undefined ? { executionMs: f.executionMs } : {}),
    };
    const timing: GpuJobTiming =
      recorded ??
      known.get(gpuJobId) ??
      (await deps.runpod.status(gpuJobId).then(timingOf, (err: unknown) => {
        if (err instanceof RunpodJobNotFound) return { gpuJobId, status: 'PURGED' };
        throw err;
      }));
    const endpoint = deps.endpoints.find((e) => e.id === record.endpointId);
    const gpu = timing.gpu ?? endpoint?.gpu ?? deps.pricing.endpointGpu;
    const pricePerHour = endpoint?.pricePerHour ?? priceFor(deps.pricing, gpu);
    const where = { ...(record.endpointId ? { endpointId: record.endpointId } : {}), ...(record.movedFrom ? { movedFrom: record.movedFrom } : {}) };
    jobs.push({ ...timing, ...(gpu ? { gpu } : {}), pricePerHour, cost: costOf(timing.executionMs ?? 0, pricePerHour), ...where });
  }
  const sum = (k: 'delayMs' | 'executionMs') => jobs.reduce((n, j) => n + (j[k] ?? 0), 0) / 1000;
  return {
    jobs,
    gpuSeconds: sum('executionMs'),
    queueSeconds: sum('delayMs'),
    unknownJobs: jobs.filter((j) => j.executionMs === undefined).length,
    pricePerHour: priceFor(deps.pricing, deps.pricing.endpointGpu),
    cost: round6(jobs.reduce((n, j) => n + j.cost, 0)),
  };
}

/**
 * A run's budget, checked while its GPU jobs run: what its other jobs cost plus the running job's
 * time so far, at the endpoint's GPU price. Over the limit, the caller cancels the job and fails.
 */
export function budgetGuard(deps: Pick<ActivityDeps, 'storage' | 'runpod' | 'pricing' | 'endpoints'>, runKey: string, limit: number) {
  const currency = (n: number) => n.toFixed(n < 0.01 ? 4 : 2);
  const exceeded = (spent: number, gpuJobId?: string) =>
    ApplicationFailure.create({
      type: 'BudgetExceeded',
      nonRetryable: true,
      message: `the run's GPU cost reached ${currency(spent)}, over its budget of ${currency(limit)}${gpuJobId ? `: GPU job ${gpuJobId} was cancelled` : ': no further GPU job submitted'}`,
      details: [{ spent: round6(spent), budget: limit }],
    });
  // What beforeSubmit found is what the job it lets through is checked against: the run's other jobs.
  let spentAtSubmit: number | undefined;
  return {
    limit,
    /** Before submitting: fails when the run's earlier jobs already spent the budget. */
    async beforeSubmit(): Promise<void> {
      const { cost } = await gpuUsage(deps, runKey);
      if (cost >= limit) throw exceeded(cost);
      spentAtSubmit = cost;
    },
    /** For the job being waited on (on `endpoint`, priced as it is): a check of its running time, to call on every status. */
    async forJob(gpuJobId: string, endpoint?: GpuEndpoint) {
      const before = spentAtSubmit ?? (await gpuUsage(deps, runKey, [], gpuJobId)).cost;
      spentAtSubmit = undefined;
      const price = endpoint ? endpointPrice(deps.pricing, endpoint) : priceFor(deps.pricing, deps.pricing.endpointGpu);
      return {
        /** The run's cost if the job has run `runningMs` so far; throws once over the limit. */
        check(runningMs: number): void {
          const spent = before + ((runningMs / 1000) * price) / 3600;
          if (spent > limit) throw exceeded(spent, gpuJobId);
        },
      };
    },
  };
}
export type BudgetGuard = ReturnType<typeof budgetGuard>;

/** The run's budget guard, when it has a budget. */
export const budgetOf = (deps: ActivityDeps, runKey: string, budget: number | undefined) => (budget !== undefined ? budgetGuard(deps, runKey, budget) : undefined);
