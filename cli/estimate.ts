// What a run would cost before it pays anything: per eligible endpoint, GPU time from the measured
// seconds per step of earlier runs (their published metadata.json) or the stated defaults, and
// whether it fits the budget. `train --dry-run`, the API's dry run and the refusal of a run over
// budget (cli/train.ts) all come from here.
import type { LoraMetadata, TrainRequest } from '../contract/pipeline.js';
import { type Config, endpointSpecs } from '../lib/config.js';
import { eligibleEndpoints, type EndpointChoice, type EndpointEstimate, estimateOn, memoryNeededGb, overBudget, type SpeedSample } from '../lib/endpoints.js';
import { formatCost, type GpuPricing } from '../lib/pricing.js';
import { getJson, listKeys, type Storage } from '../lib/s3.js';

export interface RunEstimate {
  /** GB of GPU memory the run needs (README arithmetic); absent for a model of no known family. */
  memoryGb?: number;
  endpoints: EndpointEstimate[];
  skipped: EndpointChoice['skipped'];
  budget?: number;
  /** Set when the first eligible endpoint's estimate is over the budget: the run is refused. */
  refusal?: string;
}

/** The most earlier runs read for their speed (newest keys first). */
const MAX_SAMPLES = 200;

/** Seconds per step and per-run setup of published runs of `baseModel`. */
export async function speedSamples(storage: Storage, baseModel: string): Promise<SpeedSample[]> {
  const keys = (await listKeys(storage, 'loras/')).filter((k) => k.endsWith('/metadata.json')).reverse().slice(0, MAX_SAMPLES);
  const samples: SpeedSample[] = [];
  for (const key of keys) {
    const m = await getJson<LoraMetadata>(storage, key).catch(() => undefined);
    const trained = m?.metrics.seconds.training;
    const steps = m?.metrics.stepsPaid ?? m?.metrics.steps;
    if (!m || m.baseModel !== baseModel || !trained || !steps) continue;
    const setup = Object.entries(m.metrics.seconds).reduce((n, [phase, s]) => (phase === 'training' ? n : n + s), 0);
    samples.push({
      baseModel,
      batchSize: m.params.batchSize,
      ...(m.params.resolution !== undefined ? { resolution: m.params.resolution } : {}),
      ...(m.metrics.device ? { gpu: m.metrics.device } : {}),
      secondsPerStep: trained / steps,
      setupSeconds: setup,
    });
  }
  return samples;
}

const pricingOf = (config: Config): GpuPricing => ({
  defaultPerHour: config.LORAFLOW_GPU_PRICE_PER_HOUR,
  byType: config.LORAFLOW_GPU_PRICES,
  ...(config.LORAFLOW_GPU_TYPE ? { endpointGpu: config.LORAFLOW_GPU_TYPE } : {}),
});

/** The run's estimate on each endpoint it may use, in the order it would try them. */
export async function estimateRun(storage: Storage, config: Config, request: Pick<TrainRequest, 'training' | 'budget' | 'gpu'>): Promise<RunEstimate> {
  const specs = endpointSpecs(config);
  const run = { baseModel: request.training.baseModel, params: request.training.params };
  const memoryGb = memoryNeededGb(run);
  const choice = eligibleEndpoints(specs, memoryGb, request.gpu);
  const samples = await speedSamples(storage, run.baseModel);
  const endpoints = choice.eligible.map((e) => estimateOn(run, e, pricingOf(config), samples, request.budget));
  const refusal = overBudget(endpoints, request.budget);
  return { ...(memoryGb !== undefined ? { memoryGb } : {}), endpoints, skipped: choice.skipped, ...(request.budget !== undefined ? { budget: request.budget } : {}), ...(refusal ? { refusal } : {}) };
}

/** The estimate as `train --dry-run` prints it. */
export function describeEstimate(e: RunEstimate): string {
  const lines = [`GPU memory needed: ${e.memoryGb !== undefined ? `${e.memoryGb} GB` : 'unknown (base model of no known family)'}`];
  for (const x of e.endpoints) {
    const fits = x.withinBudget === undefined ? '' : x.withinBudget ? ', within budget' : `, over the budget of ${formatCost(e.budget!)}`;
    lines.push(`  ${x.endpointId}${x.gpu ? ` (${x.gpu})` : ''}: ${x.gpuSeconds} GPU s, ${formatCost(x.cost)} at $${x.pricePerHour}/h [${x.source}${x.samples ? `, ${x.samples} runs` : ''}]${fits}`);
  }
  for (const s of e.skipped) lines.push(`  ${s.id}: not used: ${s.reason}`);
  if (!e.endpoints.length) lines.push('  no endpoint fits this run');
  if (e.refusal) lines.push(`refused: ${e.refusal}`);
  return lines.join('\n');
}
