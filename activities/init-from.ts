// resolveInitFrom: the published version a training starts from (`--init-from NAME@VERSION`, or
// `latest`) or continues (`loraflow extend`), checked before any GPU time is spent: it must exist,
// share the run's base model and rank, and be loadable (a diffusers-layout LoRA, or a final
// checkpoint for extend). A refusal is not retried: nothing about it changes by waiting.
import { ApplicationFailure, log } from '@temporalio/activity';
import { z } from 'zod';
import { InitFrom, LoraName, type LoraMetadata, type ResolvedInitFrom, TrainingSettings } from '../contract/pipeline.js';
import { latestKey, loraKeys, manifestKey } from '../lib/keys.js';
import { getBytesIfExists } from '../lib/s3.js';
import type { ActivityDeps } from './deps.js';
import { parseInput } from './input.js';

export const InitFromInput = z.object({
  /** The run's own LoRA name: `latest` of it may not exist yet (a schedule's first run starts fresh). */
  name: LoraName,
  initFrom: InitFrom,
  training: TrainingSettings,
});

const refused = (message: string) => ApplicationFailure.nonRetryable(`initFrom: ${message}`, 'InitFromRefused');

/** `{}` when `latest` of the run's own name has nothing published yet: train from fresh weights. */
export async function resolveInitFrom(deps: ActivityDeps, raw: z.input<typeof InitFromInput>): Promise<Partial<ResolvedInitFrom>> {
  const { name, initFrom, training } = parseInput(InitFromInput, raw);
  let version = initFrom.version;
  if (version === 'latest') {
    const latest = await getBytesIfExists(deps.storage, latestKey(initFrom.name));
    if (!latest) {
      if (initFrom.name === name && initFrom.mode === 'weights') {
        log.info('initFrom latest: nothing published yet under this name; training from fresh weights', { name });
        return {};
      }
      throw refused(`${initFrom.name} has no published version yet`);
    }
    version = (JSON.parse(latest.toString('utf8')) as { version: string }).version;
  }
  const ref = `${initFrom.name}@${version}`;
  const keys = loraKeys(initFrom.name, version);
  const bytes = await getBytesIfExists(deps.storage, keys.metadata);
  if (!bytes) throw refused(`no published version ${ref} (no ${keys.metadata})`);
  const meta = JSON.parse(bytes.toString('utf8')) as LoraMetadata;
  checkCompatible(ref, meta, training, initFrom.mode);
  const parent = { name: initFrom.name, version, mode: initFrom.mode, sha256: meta.lora.sha256 };
  if (initFrom.mode === 'weights') return { parent, weights: { key: keys.lora, kind: 'lora', sha256: meta.lora.sha256 } };

  // continue: the same images and captions, from the published copies, without ingest or caption.
  const { dataset } = meta;
  return {
    parent,
    weights: { key: keys.checkpoint, kind: 'checkpoint', sha256: meta.checkpoint!.sha256 },
    dataset: { manifestKey: manifestKey(dataset.manifestSha256), manifestSha256: dataset.manifestSha256, imageCount: dataset.images, sidecarCaptions: dataset.captions.sidecar, duplicatesDropped: 0 },
    captions: { ...dataset.captions, captionsKey: keys.captions, gpuCaptioned: 0, cached: 0, gpuJobId: undefined },
  };
}

/** Why `meta` cannot be where `training` starts, as one error naming the flag to change. Pure. */
export function checkCompatible(ref: string, meta: Pick<LoraMetadata, 'baseModel' | 'params' | 'format' | 'checkpoint'>, training: TrainingSettings, mode: InitFrom['mode']): void {
  if (meta.baseModel !== training.baseModel) throw refused(`${ref} was trained on base model ${meta.baseModel}, this run trains ${training.baseModel} (--base-model)`);
  if (meta.params.rank !== training.params.rank) throw refused(`${ref} has rank ${meta.params.rank}, this run trains rank ${training.params.rank} (--rank): a LoRA continues at its own rank`);
  if (mode === 'weights' && meta.format === 'kohya') {
    throw refused(`${ref} was published in the kohya layout, which cannot be loaded back; start from a version published in the diffusers layout (the default --format)`);
  }
  if (mode === 'continue') {
    if (!meta.checkpoint) throw refused(`${ref} has no final checkpoint (published before loraflow kept one); start a new training from its weights with --init-from ${ref}`);
    if (training.params.steps <= meta.checkpoint.step) throw refused(`${ref} already trained ${meta.checkpoint.step} steps; --steps must add some`);
  }
}
