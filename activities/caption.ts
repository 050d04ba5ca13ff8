// caption: sidecar captions win; images without one are captioned by a GPU job.
// The trigger word is put in front of every caption exactly once.
import { log } from '@temporalio/activity';
import { z } from 'zod';
import { CaptionJobOutput, TriggerWord } from '../contract/gpu-job.js';
import type { CaptionResult, DatasetManifest } from '../contract/pipeline.js';
import { getJson, presignGet, putBytes } from '../lib/s3.js';
import type { ActivityDeps } from './deps.js';
import { runGpuJob } from './gpu-job.js';
import { parseInput } from './ingest.js';

export const CaptionInput = z.object({ runKey: z.string().min(1), manifestKey: z.string().min(1), triggerWord: TriggerWord });

/** Stored at `captionsKey`: image id → final caption. */
export type Captions = Record<string, string>;

export async function captionDataset(deps: ActivityDeps, raw: z.input<typeof CaptionInput>): Promise<CaptionResult> {
  const input = parseInput(CaptionInput, raw);
  const manifest = await getJson<DatasetManifest>(deps.storage, input.manifestKey);
  const captions: Captions = {};
  for (const image of manifest.images) if (image.caption) captions[image.id] = withTrigger(input.triggerWord, image.caption);

  const missing = manifest.images.filter((image) => !image.caption);
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
      { jobsPrefix: `runs/${input.runKey}/gpu-jobs` },
    );
    gpuJobId = job.gpuJobId;
    for (const { id, caption } of job.output.captions) captions[id] = withTrigger(input.triggerWord, caption);
    const uncaptioned = missing.filter((i) => !captions[i.id]).map((i) => i.source);
    if (uncaptioned.length) throw new Error(`GPU job ${gpuJobId} returned no caption for: ${uncaptioned.join(', ')}`);
  }

  const captionsKey = `runs/${input.runKey}/captions.json`;
  await putBytes(deps.storage, captionsKey, JSON.stringify(captions, null, 1), 'application/json');
  log.info('captions stored', { sidecar: manifest.images.length - missing.length, gpu: missing.length });
  return { captionsKey, sidecar: manifest.images.length - missing.length, gpuCaptioned: missing.length, gpuJobId };
}

export function withTrigger(trigger: string, caption: string): string {
  const rest = caption
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part && part !== trigger);
  return [trigger, ...rest].join(', ');
}
