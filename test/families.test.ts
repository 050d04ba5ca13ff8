// SDXL- and FLUX-shaped trainings through the whole pipeline, on the real GPU worker and the tiny
// models: the first training encodes every image and stores the encodings in S3; a retrain on the
// same images (another seed) trains from them (no image downloaded, nothing encoded) on the
// denoiser the warm worker kept. Later segments of one training take the same path (each job asks
// the cache anew: activities/train.ts); gpu-worker/tests/test_encoding_cache.py covers the worker.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrainJobOutput } from '../contract/gpu-job.js';
import { TrainRequest } from '../contract/pipeline.js';
import { runKeyOf, runKeys } from '../lib/keys.js';
import { getJson, listKeys } from '../lib/s3.js';
import { toolchain } from '../lib/toolchain.js';
import { makeDataset } from '../testkit/datasets.js';
import { type PipelineFixture, startPipelineFixture } from '../testkit/services.js';

let f: PipelineFixture;
let dataset: string;
const taskQueue = 'families';
const IMAGES = 3;

beforeAll(async () => {
  f = await startPipelineFixture('families', { handler: 'gpu-worker/handler.py', workerEnv: { LORAFLOW_MODEL_DIR: toolchain.modelDir(), LORAFLOW_SAMPLE_STEPS: '2' } });
  await f.serve(taskQueue);
  dataset = await makeDataset(path.join(f.tmp.dir, 'dataset'), { images: IMAGES, captioned: IMAGES, size: 48 });
});
afterAll(() => f?.stop());

const STEPS = 6;
const request = (baseModel: string, seed: number) =>
  TrainRequest.parse({ name: baseModel, dataset: { path: dataset, fingerprint: 'f'.repeat(64) }, training: { triggerWord: 'lffam', baseModel, params: { steps: STEPS, rank: 4, seed } } });

/** Each train job's own output, in submission order. */
async function trainOutputs(workflowId: string, runId: string): Promise<TrainJobOutput[]> {
  const prefix = `${runKeys(runKeyOf(workflowId, runId)).prefix}/train/`;
  const results = (await listKeys(f.s3.storage, prefix)).filter((k) => k.endsWith('/result.json'));
  results.sort((a, b) => Number(a.slice(prefix.length).split('/')[0]) - Number(b.slice(prefix.length).split('/')[0]));
  return Promise.all(results.map((k) => getJson<TrainJobOutput>(f.s3.storage, k)));
}

/** Trains `request` to the end; -> its train jobs' outputs and the published LoRA's sha256. */
async function train(req: TrainRequest) {
  const handle = await f.start(taskQueue, req);
  const published = await handle.result();
  return { published, jobs: await trainOutputs(handle.workflowId, handle.firstExecutionRunId) };
}

describe('SDXL and FLUX shaped trainings', () => {
  for (const base of ['tiny-sdxl', 'tiny-flux']) {
    it(`${base}: a retrain on the same images trains from the cached encodings on the kept denoiser`, async () => {
      const first = await train(request(base, 1));
      expect(first.jobs.map((j) => j.metrics.encodings)).toEqual([{ hits: 0, encoded: IMAGES, stored: IMAGES }]);
      const retrain = await train(request(base, 2));
      expect(retrain.jobs.map((j) => j.metrics.encodings)).toEqual([{ hits: IMAGES, encoded: 0, stored: 0 }]);
      expect(retrain.jobs[0]!.metrics.warm, 'the worker kept the denoiser').toBe(true);
      expect(retrain.jobs[0]!.metrics.steps).toBe(STEPS);
      expect(retrain.jobs[0]!.lora?.sha256).toBe(retrain.published.sha256);
      expect(retrain.published.sha256, 'another seed, another LoRA').not.toBe(first.published.sha256);
    }, 480_000); // the file's first pipeline meets a cold GPU worker
  }
});
