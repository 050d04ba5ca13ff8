// caption: sidecar captions win; then captions cached from earlier runs, keyed by image content
// hash and captioner (lib/keys.ts); only the remaining images are captioned by a GPU job, whose
// captions are cached in turn. The trigger word is put in front of every caption exactly once
// (the cache holds captions without it, so any trigger can reuse them). A run may name its
// captioner and prompt (each has its own cache) and a prefix and suffix for every caption.
import { log } from '@temporalio/activity';
import { z } from 'zod';
import { CaptionJobOutput, TriggerWord } from '../contract/gpu-job.js';
import { Budget, type CaptionResult, type Captions, CaptionSettings, type DatasetManifest, type DatasetManifestImage } from '../contract/pipeline.js';
import { sha256 } from '../lib/hash.js';
import { captionCacheKey, runKeys } from '../lib/keys.js';
import { getBytesIfExists, getJson, presignGet, putBytes } from '../lib/s3.js';
import type { ActivityDeps } from './deps.js';
import { runGpuJob, stageEndpoints } from './gpu-job.js';
import { parseInput } from './input.js';
import { budgetOf } from './usage.js';

export const CaptionInput = z.object({
  runKey: z.string().min(1),
  manifestKey: z.string().min(1),
  triggerWord: TriggerWord,
  /** The run's GPU budget (see TrainInput.budget). */
  budget: Budget.optional(),
  settings: CaptionSettings.optional(),
  /** The GPU type the run is pinned to (see TrainInput.gpu). */
  gpu: z.string().min(1).optional(),
});

/** S3 requests in flight at once when reading or writing the caption cache. */
const CACHE_CONCURRENCY = 16;

export async function captionDataset(deps: ActivityDeps, raw: z.input<typeof CaptionInput>): Promise<CaptionResult> {
  const input = parseInput(CaptionInput, raw);
  const settings = input.settings ?? {};
  const captioner = settings.captioner ?? deps.captioner;
  // A prompt steers what the captioner writes: its captions are cached apart from the plain ones.
  const cacheName = cacheNameOf(captioner, settings.prompt);
  const final = (caption: string) => withTrigger(input.triggerWord, [settings.prefix, caption, settings.suffix].filter(Boolean).join(', '));
  const manifest = await getJson<DatasetManifest>(deps.storage, input.manifestKey);
  const captions: Captions = {};
  for (const image of manifest.images) if (image.caption) captions[image.id] = final(image.caption);

  const uncaptioned = manifest.images.filter((image) => !image.caption);
  // Captions paid for by earlier runs of the same captioner (and prompt).
  const cached = await readCache(deps, cacheName, uncaptioned);
  for (const [id, caption] of cached) captions[id] = final(caption);
  const missing = uncaptioned.filter((image) => !cached.has(image.id));

  let gpuJobId: string | undefined;
  if (missing.length) {
    const job = await runGpuJob(
      deps,
      async ({ claim, resultUrl }) => ({
        task: 'caption',
        triggerWord: input.triggerWord,
        images: await Promise.all(missing.map(async (i) => ({ id: i.id, url: await presignGet(deps.storage, i.key, 12 * 3600) }))),
        ...(settings.captioner ? { captioner: settings.captioner } : {}),
        ...(settings.prompt ? { prompt: settings.prompt } : {}),
        // Claimed like a training: a duplicate caption job stops before it pays for the captioner.
        claim,
        result: { url: resultUrl },
      }),
      CaptionJobOutput,
      { runKey: input.runKey, stage: 'caption', budget: budgetOf(deps, input.runKey, input.budget), endpoints: stageEndpoints(deps, undefined, input.gpu) },
    );
    gpuJobId = job.gpuJobId;
    for (const { id, caption } of job.output.captions) captions[id] = final(caption);
    const unanswered = missing.filter((i) => !captions[i.id]).map((i) => i.source);
    if (unanswered.length) throw new Error(`GPU job ${gpuJobId} returned no caption for: ${unanswered.join(', ')}`);
    if (job.output.captioner !== captioner) {
      log.warn('the endpoint captions with a different captioner than configured: cached captions will not be found', { configured: captioner, endpoint: job.output.captioner });
    }
    await writeCache(deps, cacheNameOf(job.output.captioner, settings.prompt), input.triggerWord, job.output.captions, new Set(missing.map((i) => i.id)));
  }

  const { captions: captionsKey } = runKeys(input.runKey);
  await putBytes(deps.storage, captionsKey, JSON.stringify(captions, null, 1), 'application/json');
  const sidecar = manifest.images.length - uncaptioned.length;
  log.info('captions stored', { sidecar, cached: cached.size, gpu: missing.length });
  return { captionsKey, sidecar, gpuCaptioned: missing.length, cached: cached.size, gpuJobId, ...(settings.captioner ? { captioner: settings.captioner } : {}) };
}

/** The caption cache's folder: a captioner's plain captions, or those it wrote after one prompt. */
const cacheNameOf = (captioner: string, prompt?: string) => (prompt ? `${captioner}.prompt-${sha256(prompt).slice(0, 16)}` : captioner);

/** Runs `fn` over `items`, CACHE_CONCURRENCY at a time. */
async function inBatches<T>(items: T[], fn: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += CACHE_CONCURRENCY) await Promise.all(items.slice(i, i + CACHE_CONCURRENCY).map(fn));
}

async function readCache(deps: ActivityDeps, captioner: string, images: DatasetManifestImage[]): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  await inBatches(images, async (image) => {
    const text = (await getBytesIfExists(deps.storage, captionCacheKey(captioner, image.id)))?.toString('utf8').trim();
    if (text) found.set(image.id, text);
  });
  return found;
}

async function writeCache(deps: ActivityDeps, captioner: string, trigger: string, captions: { id: string; caption: string }[], asked: Set<string>): Promise<void> {
  await inBatches(captions, async ({ id, caption }) => {
    const text = withoutTrigger(trigger, caption);
    if (asked.has(id) && text) await putBytes(deps.storage, captionCacheKey(captioner, id), text, 'text/plain; charset=utf-8');
  });
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
