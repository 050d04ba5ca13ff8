// caption: sidecar captions win; then captions cached from earlier runs, keyed by image content
// hash and captioner (captions/<captioner>/<image sha256>.txt); only the remaining images are
// captioned by a GPU job, whose captions are cached in turn. The trigger word is put in front of
// every caption exactly once (the cache holds captions without it, so any trigger can reuse them).
import { log } from '@temporalio/activity';
import { z } from 'zod';
import { CaptionJobOutput, TriggerWord } from '../contract/gpu-job.js';
import type { CaptionResult, DatasetManifest, DatasetManifestImage } from '../contract/pipeline.js';
import { getBytesIfExists, getJson, presignGet, putBytes } from '../lib/s3.js';
import type { ActivityDeps } from './deps.js';
import { runGpuJob } from './gpu-job.js';
import { budgetGuard } from './usage.js';
import { parseInput } from './ingest.js';

export const CaptionInput = z.object({
  runKey: z.string().min(1),
  manifestKey: z.string().min(1),
  triggerWord: TriggerWord,
  /** The run's GPU budget (see TrainInput.budget). */
  budget: z.number().positive().optional(),
});

/** Stored at `captionsKey`: image id → final caption. */
export type Captions = Record<string, string>;

/** Where a captioner's caption of an image is cached. */
export const captionCacheKey = (captioner: string, imageSha256: string) => `captions/${safeName(captioner)}/${imageSha256}.txt`;

export async function captionDataset(deps: ActivityDeps, raw: z.input<typeof CaptionInput>): Promise<CaptionResult> {
  const input = parseInput(CaptionInput, raw);
  const manifest = await getJson<DatasetManifest>(deps.storage, input.manifestKey);
  const captions: Captions = {};
  for (const image of manifest.images) if (image.caption) captions[image.id] = withTrigger(input.triggerWord, image.caption);

  const uncaptioned = manifest.images.filter((image) => !image.caption);
  // Captions paid for by earlier runs, if the endpoint's captioner is known (deps.captioner).
  const cached = deps.captioner ? await readCache(deps, deps.captioner, uncaptioned) : new Map<string, string>();
  for (const [id, caption] of cached) captions[id] = withTrigger(input.triggerWord, caption);
  const missing = uncaptioned.filter((image) => !cached.has(image.id));

  let gpuJobId: string | undefined;
  if (missing.length) {
    const job = await runGpuJob(
      deps,
      async () => ({
        task: 'caption',
        triggerWord: input.triggerWord,
        images: await Promise.all(missing.map(async (i) => ({ id: i.id, url: await presignGet(deps.storage, i.key) }))),
      }),
      CaptionJobOutput,
      { jobsPrefix: `runs/${input.runKey}/gpu-jobs`, ...(input.budget ? { budget: budgetGuard(deps, input.runKey, input.budget) } : {}) },
    );
    gpuJobId = job.gpuJobId;
    for (const { id, caption } of job.output.captions) captions[id] = withTrigger(input.triggerWord, caption);
    const unanswered = missing.filter((i) => !captions[i.id]).map((i) => i.source);
    if (unanswered.length) throw new Error(`GPU job ${gpuJobId} returned no caption for: ${unanswered.join(', ')}`);
    if (deps.captioner && job.output.captioner !== deps.captioner) {
      log.warn('the endpoint captions with a different captioner than configured: cached captions will not be found', { configured: deps.captioner, endpoint: job.output.captioner });
    }
    await writeCache(deps, job.output.captioner, input.triggerWord, job.output.captions, new Set(missing.map((i) => i.id)));
  }

  const captionsKey = `runs/${input.runKey}/captions.json`;
  await putBytes(deps.storage, captionsKey, JSON.stringify(captions, null, 1), 'application/json');
  const sidecar = manifest.images.length - uncaptioned.length;
  log.info('captions stored', { sidecar, cached: cached.size, gpu: missing.length });
  return { captionsKey, sidecar, gpuCaptioned: missing.length, cached: cached.size, gpuJobId };
}

async function readCache(deps: ActivityDeps, captioner: string, images: DatasetManifestImage[]): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  for (let i = 0; i < images.length; i += 16) {
    await Promise.all(
      images.slice(i, i + 16).map(async (image) => {
        const text = (await getBytesIfExists(deps.storage, captionCacheKey(captioner, image.id)))?.toString('utf8').trim();
        if (text) found.set(image.id, text);
      }),
    );
  }
  return found;
}

async function writeCache(deps: ActivityDeps, captioner: string, trigger: string, captions: { id: string; caption: string }[], asked: Set<string>): Promise<void> {
  for (let i = 0; i < captions.length; i += 16) {
    await Promise.all(
      captions.slice(i, i + 16).map(async ({ id, caption }) => {
        const text = withoutTrigger(trigger, caption);
        if (asked.has(id) && text) await putBytes(deps.storage, captionCacheKey(captioner, id), text, 'text/plain; charset=utf-8');
      }),
    );
  }
}

export function withTrigger(trigger: string, caption: string): string {
  return [trigger, ...withoutTrigger(trigger, caption).split(', ').filter(Boolean)].join(', ');
}

/** The caption's parts other than the trigger word, ", "-joined. */
export function withoutTrigger(trigger: string, caption: string): string {
  return caption
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part && part !== trigger)
    .join(', ');
}

const safeName = (name: string) => name.replace(/[^A-Za-z0-9._-]/g, '_') || '_';
