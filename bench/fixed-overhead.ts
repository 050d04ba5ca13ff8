// Paid seconds go to training: the billed seconds of a GPU job spent outside training steps, as a
// share of the job, for a training's first segment, a later segment and a retrain on the same
// images. "after" is the shipped worker (the warm denoiser, warm.py; the S3 cache of encodings,
// encoding_cache.py); "before" the same worker keeping nothing between jobs and given no cache
// (LORAFLOW_KEEP_DENOISER=0, no `encoding` refs), as every job ran before them. Same run, same
// machine, the real GPU worker on the FLUX-shaped tiny model on CPU through runpod-local.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { encodingRefs } from '../activities/encodings.js';
import { TrainJobInput, type TrainJobOutput } from '../contract/gpu-job.js';
import type { RunpodClient } from '../lib/runpod-client.js';
import { presignGet, presignPut, putBytes, type Storage } from '../lib/s3.js';
import { makeDataset } from '../testkit/datasets.js';
import { startS3, tempDir } from '../testkit/services.js';
import { round, runToEnd, startRealGpuEndpoint } from './lib.js';

const BASE = 'tiny-flux';
const SCENARIOS = ['firstSegment', 'laterSegment', 'retrain'] as const;
type Scenario = (typeof SCENARIOS)[number];

export interface OverheadFigures {
  billedSeconds: number;
  trainingSeconds: number;
  /** (billed − training) / billed: what the job paid for outside its training steps. */
  overheadShare: number;
  phaseSeconds: Record<string, number>;
  encodings?: TrainJobOutput['metrics']['encodings'];
  warm?: boolean;
}

export async function benchFixedOverhead(o: { steps: number; images: number; log: (m: string) => void }) {
  const tmp = tempDir('bench-fixed');
  const s3 = await startS3(tmp.dir);
  try {
    const dir = await makeDataset(path.join(tmp.dir, 'dataset'), { images: o.images, captioned: 0, size: 64 });
    const images = await Promise.all(
      readdirSync(dir).map(async (name, i) => {
        const bytes = readFileSync(path.join(dir, name));
        const id = createHash('sha256').update(bytes).digest('hex');
        await putBytes(s3.storage, `images/${id}.png`, bytes, 'image/png');
        return { id, key: `images/${id}.png`, caption: `lfbench, a test square ${i}` };
      }),
    );
    const before = await measure(s3.storage, images, { ...o, cache: false, keepDenoiser: false, tmp: tmp.dir });
    const after = await measure(s3.storage, images, { ...o, cache: true, keepDenoiser: true, tmp: tmp.dir });
    return {
      model: `${BASE} (random-initialised FLUX-shaped transformer), CPU`,
      steps: o.steps,
      images: o.images,
      before,
      after,
      /** after / before of each overhead share: below 1 is better. */
      ratio: Object.fromEntries(SCENARIOS.map((s) => [s, round(after[s].overheadShare / before[s].overheadShare, 3)])),
      target: { laterSegment: 0.05, retrain: 0.05 },
    };
  } finally {
    await s3.stop();
    tmp.remove();
  }
}

/** One worker, four jobs: a warm-up on another model (imports, so the first segment is not a cold process), then the scenarios. */
async function measure(
  storage: Storage,
  images: { id: string; key: string; caption: string }[],
  o: { steps: number; cache: boolean; keepDenoiser: boolean; tmp: string; log: (m: string) => void },
): Promise<Record<Scenario, OverheadFigures>> {
  const label = o.cache ? 'after' : 'before';
  const { runpod, client } = await startRealGpuEndpoint(path.join(o.tmp, 'logs', `runpod-${label}.log`), { LORAFLOW_KEEP_DENOISER: o.keepDenoiser ? '1' : '0' });
  const lora = (seed: number) => ({ baseModel: BASE, triggerWord: 'lfbench', params: TrainJobInput.shape.params.parse({ steps: 2 * o.steps, seed, rank: 4 }), format: 'diffusers' as const });
  const job = async (name: string, settings: ReturnType<typeof lora>, extra: Record<string, unknown>) => {
    const encodings = o.cache ? await encodingRefs(storage, settings, images, 3600) : undefined;
    const input = TrainJobInput.parse({
      task: 'train',
      ...settings,
      images: await Promise.all(images.map(async (img, n) => ({ id: img.id, url: await presignGet(storage, img.key), caption: img.caption, ...(encodings ? { encoding: encodings[n] } : {}) }))),
      output: { loraUrl: await presignPut(storage, `bench-fixed/${label}/${name}.safetensors`) },
      ...extra,
    });
    return run(client, input);
  };
  try {
    await job('warm-up', { ...lora(1), baseModel: 'tiny-sd' }, { stopAtStep: 1, checkpoint: { url: await presignPut(storage, `bench-fixed/${label}/warm-up.ckpt`), everySteps: 1000 } });
    const ckpt = `bench-fixed/${label}/segment-1.ckpt`;
    const figures = {
      firstSegment: await job('segment-1', lora(1), { stopAtStep: o.steps, checkpoint: { url: await presignPut(storage, ckpt), everySteps: 100_000 } }),
      laterSegment: await job('segment-2', lora(1), { resume: { url: await presignGet(storage, ckpt) } }),
      // Another training on the same images (a new seed: a new fingerprint, the same encodings), as long as one segment.
      retrain: await job('retrain', { ...lora(2), params: { ...lora(2).params, steps: o.steps } }, {}),
    };
    o.log(`fixed overhead ${label}: ${JSON.stringify(figures)}`);
    return figures;
  } finally {
    await runpod.stop();
  }
}

async function run(client: RunpodClient, input: TrainJobInput): Promise<OverheadFigures> {
  const status = await runToEnd(client, input);
  const output = status.output as TrainJobOutput & { error?: string };
  if (status.status !== 'COMPLETED' || output?.error) throw new Error(`GPU job ${status.status}: ${status.error ?? output?.error}`);
  const billed = (status.executionTime ?? 0) / 1000;
  const training = output.metrics.seconds.training ?? 0;
  return {
    billedSeconds: round(billed),
    trainingSeconds: round(training),
    overheadShare: round((billed - training) / billed, 4),
    phaseSeconds: output.metrics.seconds,
    ...(output.metrics.encodings ? { encodings: output.metrics.encodings } : {}),
    ...(output.metrics.warm !== undefined ? { warm: output.metrics.warm } : {}),
  };
}
