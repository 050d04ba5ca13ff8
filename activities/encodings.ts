// The S3 cache of image encodings (gpu-worker/encoding_cache.py): each image's VAE latents and
// caption conditioning, named after everything they depend on, so that a later segment or a
// retrain on the same images hands the worker the stored entry instead of the image to encode.
import type { TrainingSettings } from '../contract/pipeline.js';
import { sha256 } from '../lib/hash.js';
import { encodingKey } from '../lib/keys.js';
import { exists, presignGet, presignPut, type Storage } from '../lib/s3.js';

/** Bump when the worker's encoding changes meaning (not only its file layout, which the entry names). */
const ENCODING_VERSION = 1;
/** HEADs in flight at once: thousands of images, one request each per job. */
const CONCURRENCY = 16;

type Lora = Omit<TrainingSettings, 'sampleEvery'>;

/**
 * What an image's encodings depend on. The resolution and bucket follow from these with the base
 * model (absent resolution: the model's native one); the dtype `auto` resolves to differs by GPU,
 * which the worker checks in the entry itself.
 */
export function encodingId(lora: Lora, image: { id: string; caption: string }): string {
  const p = lora.params;
  return sha256(
    JSON.stringify({
      v: ENCODING_VERSION,
      baseModel: lora.baseModel,
      image: image.id,
      trigger: lora.triggerWord,
      caption: image.caption,
      resolution: p.resolution ?? null,
      aspectBuckets: p.aspectBuckets,
      flip: !!p.flipHorizontal,
      captionDropout: !!p.captionDropout,
      precision: p.mixedPrecision,
    }),
  );
}

/** Per image: a GET of its entry when the cache has one, else a PUT for the worker to store it. */
export async function encodingRefs(storage: Storage, lora: Lora, images: { id: string; caption: string }[], lifetimeS: number) {
  const refs: ({ readUrl: string } | { url: string })[] = new Array(images.length);
  let next = 0;
  const worker = async () => {
    while (next < images.length) {
      const i = next++;
      const key = encodingKey(encodingId(lora, images[i]!));
      refs[i] = (await exists(storage, key)) ? { readUrl: await presignGet(storage, key, lifetimeS) } : { url: await presignPut(storage, key, lifetimeS) };
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, images.length) }, worker));
  return refs;
}
