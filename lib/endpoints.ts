// GPU endpoints in order of preference, which of them a run fits on, and what it would cost there.
// Pure functions: the config parses LORAFLOW_ENDPOINTS with them, GPU stages choose with them, and
// `train --dry-run` (and the API) estimate with them.
import { formatCost, type GpuPricing, priceFor, round6 } from './pricing.js';

export interface EndpointSpec {
  /** The serverless endpoint's id (`/v2/{id}/…`). */
  id: string;
  /** Its GPU type, e.g. "A100 80GB": what `--gpu` pins and the price table is matched against. */
  gpu?: string;
  /** GPU memory per worker in GB; absent: any run is taken to fit. */
  memoryGb?: number;
  /** Price of one GPU hour; absent: the price table's (LORAFLOW_GPU_PRICES) for `gpu`. */
  pricePerHour?: number;
}

/**
 * "id:GPU:memoryGB[:price],…" (e.g. "ep-a:RTX 4090:24:0.69,ep-b:A100 80GB:80") → specs in the
 * order written; a bad entry names itself.
 */
export function parseEndpoints(text: string): EndpointSpec[] {
  const specs: EndpointSpec[] = [];
  for (const entry of text.split(',').map((e) => e.trim()).filter(Boolean)) {
    const m = /^([A-Za-z0-9_-]+):([^:]+):(\d+(?:\.\d+)?)(?::(\d+(?:\.\d+)?))?$/.exec(entry);
    if (!m) throw new Error(`"${entry}": expected endpoint-id:GPU type:memory GB[:price per hour], e.g. abc123:A100 80GB:80:2.72`);
    if (specs.some((s) => s.id === m[1])) throw new Error(`"${entry}": endpoint ${m[1]} is listed twice`);
    specs.push({ id: m[1]!, gpu: m[2]!.trim(), memoryGb: Number(m[3]), ...(m[4] !== undefined ? { pricePerHour: Number(m[4]) } : {}) });
  }
  return specs;
}

/** The endpoint's price per hour: its own, else the table's for its GPU type. */
export const endpointPrice = (pricing: GpuPricing, e: EndpointSpec) => e.pricePerHour ?? priceFor(pricing, e.gpu);

export type ModelFamily = 'sd' | 'sdxl' | 'flux' | 'tiny';

/** The family a base model name belongs to, as the GPU worker's names go (tiny-* are test models). */
export function familyOf(baseModel: string): ModelFamily | undefined {
  const name = baseModel.toLowerCase();
  if (name.startsWith('tiny-')) return 'tiny';
  if (name.includes('flux')) return 'flux';
  if (name.includes('xl')) return 'sdxl';
  if (/(^|[^a-z])sd|stable-diffusion/.test(name)) return 'sd';
  return undefined;
}

/** What a family needs at its native size with batch 1, rank 8 (gpu-worker/README.md#memory:
 * arithmetic, ±30 %): weights, LoRA + optimizer, activations with and without checkpointing. */
const FAMILY_MEMORY: Record<ModelFamily, { native: number; weights: number; lora: number; act: number; actNoCkpt: number; ckptFrom?: number }> = {
  sd: { native: 512, weights: 1.7, lora: 0.1, act: 2.5, actNoCkpt: 2.5 },
  sdxl: { native: 1024, weights: 5.1, lora: 0.2, act: 1.5, actNoCkpt: 7, ckptFrom: 1024 },
  flux: { native: 1024, weights: 23.8, lora: 0.5, act: 2.2, actNoCkpt: 32, ckptFrom: 1024 },
  tiny: { native: 32, weights: 0, lora: 0, act: 0, actNoCkpt: 0 },
};
/** CUDA context and allocator slack. */
const CONTEXT_GB = 1.5;

export interface RunShape {
  baseModel: string;
  params: { rank: number; batchSize: number; resolution?: number | undefined; gradientCheckpointing?: boolean | undefined; steps: number };
}

/**
 * GB of GPU memory the run needs, from the README's arithmetic: activations grow with batch and
 * pixels, the LoRA's share with the rank; undefined for a base model of no known family.
 */
export function memoryNeededGb(run: RunShape): number | undefined {
  const family = familyOf(run.baseModel);
  if (!family) return undefined;
  const f = FAMILY_MEMORY[family];
  const resolution = run.params.resolution ?? f.native;
  const checkpointed = run.params.gradientCheckpointing ?? (f.ckptFrom !== undefined && resolution >= f.ckptFrom);
  const act = (checkpointed ? f.act : f.actNoCkpt) * run.params.batchSize * (resolution / f.native) ** 2;
  return Math.round((f.weights + f.lora * (run.params.rank / 8) + act + CONTEXT_GB) * 10) / 10;
}

export interface EndpointChoice {
  eligible: EndpointSpec[];
  /** Endpoints left out, and why (named in errors and the dry run). */
  skipped: { id: string; reason: string }[];
}

/** The endpoints a run may use, in order: those whose GPU is `gpu` (when pinned) and whose memory fits. */
export function eligibleEndpoints(endpoints: EndpointSpec[], needGb: number | undefined, gpu?: string): EndpointChoice {
  const eligible: EndpointSpec[] = [];
  const skipped: EndpointChoice['skipped'] = [];
  for (const e of endpoints) {
    if (gpu && !e.gpu?.toLowerCase().includes(gpu.toLowerCase())) skipped.push({ id: e.id, reason: `its GPU is ${e.gpu ?? 'not stated'}, the run is pinned to ${gpu}` });
    else if (needGb !== undefined && e.memoryGb !== undefined && e.memoryGb < needGb) skipped.push({ id: e.id, reason: `${e.memoryGb} GB is less than the ${needGb} GB the run needs` });
    else eligible.push(e);
  }
  return { eligible, skipped };
}

/** Why no endpoint can take the run, naming each one. */
export const noEndpointMessage = (choice: EndpointChoice) =>
  `no GPU endpoint fits this run: ${choice.skipped.map((s) => `${s.id}: ${s.reason}`).join('; ') || 'none is configured'}`;

/** Measured speed of earlier runs: seconds per step and per job's setup, on a GPU type. */
export interface SpeedSample {
  baseModel: string;
  resolution?: number;
  batchSize: number;
  gpu?: string;
  secondsPerStep: number;
  setupSeconds: number;
}

/** Stated defaults where no earlier run was measured: seconds per step on a current 80 GB GPU at
 * batch 1 and the native size, and a job's setup (download, load, caching). Guesses, said so. */
export const DEFAULT_SPEED: Record<ModelFamily | 'unknown', { secondsPerStep: number; setupSeconds: number }> = {
  sd: { secondsPerStep: 0.25, setupSeconds: 90 },
  sdxl: { secondsPerStep: 0.8, setupSeconds: 150 },
  flux: { secondsPerStep: 2.5, setupSeconds: 300 },
  tiny: { secondsPerStep: 0.5, setupSeconds: 10 },
  unknown: { secondsPerStep: 1, setupSeconds: 180 },
};

export interface EndpointEstimate {
  endpointId: string;
  gpu?: string;
  pricePerHour: number;
  gpuSeconds: number;
  cost: number;
  /** Where the speed comes from: runs measured on this GPU, on another GPU, or the stated default. */
  source: 'measured' | 'measured-elsewhere' | 'default';
  samples: number;
  /** Whether the cost fits `--budget` (absent without one). */
  withinBudget?: boolean;
}

const sameGpu = (a: string | undefined, b: string | undefined) => !!a && !!b && (a.toLowerCase().includes(b.toLowerCase()) || b.toLowerCase().includes(a.toLowerCase()));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

/**
 * GPU time and cost of the run on one endpoint: the median speed of earlier runs of the same base
 * model, batch and size, preferring those measured on the endpoint's GPU; else the default.
 */
export function estimateOn(run: RunShape, endpoint: EndpointSpec, pricing: GpuPricing, samples: SpeedSample[], budget?: number): EndpointEstimate {
  const family = familyOf(run.baseModel);
  const similar = samples.filter((s) => s.baseModel === run.baseModel && s.batchSize === run.params.batchSize && (s.resolution ?? 0) === (run.params.resolution ?? 0));
  const onGpu = similar.filter((s) => sameGpu(s.gpu, endpoint.gpu));
  const used = onGpu.length ? onGpu : similar;
  const speed = used.length
    ? { secondsPerStep: median(used.map((s) => s.secondsPerStep)), setupSeconds: median(used.map((s) => s.setupSeconds)) }
    : DEFAULT_SPEED[family ?? 'unknown'];
  const gpuSeconds = Math.round((speed.setupSeconds + speed.secondsPerStep * run.params.steps) * 10) / 10;
  const pricePerHour = endpointPrice(pricing, endpoint);
  const cost = round6((gpuSeconds * pricePerHour) / 3600);
  return {
    endpointId: endpoint.id,
    ...(endpoint.gpu ? { gpu: endpoint.gpu } : {}),
    pricePerHour,
    gpuSeconds,
    cost,
    source: onGpu.length ? 'measured' : used.length ? 'measured-elsewhere' : 'default',
    samples: used.length,
    ...(budget !== undefined ? { withinBudget: cost <= budget } : {}),
  };
}

/** The refusal of a run whose estimate (on its first eligible endpoint) is over its budget, or undefined. */
export function overBudget(estimates: EndpointEstimate[], budget: number | undefined): string | undefined {
  const first = estimates[0];
  if (budget === undefined || !first || first.cost <= budget) return undefined;
  return `the run's estimated GPU cost is ${formatCost(first.cost)} (${first.gpuSeconds} GPU s on ${first.endpointId}), over its budget of ${formatCost(budget)}`;
}
