// ingest: a directory, .zip, zip URL or s3:// prefix (dataset-source.ts) → decoded, metadata-stripped, deduplicated images stored
// content-addressed in S3, plus a manifest whose sha256 identifies the dataset.
import path from 'node:path';
import { ApplicationFailure, heartbeat, log } from '@temporalio/activity';
import sharp from 'sharp';
import { z } from 'zod';
import { Sha256 } from '../contract/gpu-job.js';
import type { DatasetManifest, DatasetManifestImage, IngestResult } from '../contract/pipeline.js';
import { sha256 } from '../lib/hash.js';
import { imageKey, manifestKey as manifestKeyOf } from '../lib/keys.js';
import { exists, putBytes } from '../lib/s3.js';
import { openDataset } from './dataset-source.js';
import type { ActivityDeps } from './deps.js';
import { parseInput } from './input.js';

export const IngestInput = z.object({ dataset: z.object({ path: z.string().min(1), fingerprint: Sha256 }) });

const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg', '.webp']);
/** Larger inputs are refused before decoding (decompression bombs). */
const MAX_PIXELS = 40_000_000;
/** The GPU job contract's limit (contract/gpu-job.ts). */
const MAX_IMAGES = 5000;

export async function ingestDataset(deps: ActivityDeps, raw: z.input<typeof IngestInput>): Promise<IngestResult> {
  const { dataset } = parseInput(IngestInput, raw);
  const files = await openDataset(deps, dataset.path);
  const sidecars = new Map<string, string>();
  const images: DatasetManifestImage[] = [];
  const rejected: string[] = [];

  let done = 0;
  for (const file of files) {
    const ext = path.extname(file.name).toLowerCase();
    if (ext === '.txt') {
      const caption = (await file.read()).toString('utf8').trim();
      if (caption) sidecars.set(stem(file.name), caption.slice(0, 1000));
    } else if (IMAGE_EXT.has(ext)) {
      const decoded = await decode(await file.read()).catch((err: unknown) => {
        rejected.push(`${file.name} (${err instanceof Error ? err.message : String(err)})`);
      });
      // Storage errors are not the image's fault: they propagate, and the activity is retried.
      if (decoded) images.push(await storeImage(deps, file.name, decoded));
    }
    heartbeat({ done: ++done, total: files.length });
  }

  if (rejected.length) {
    throw ApplicationFailure.nonRetryable(
      `${rejected.length} file(s) in ${dataset.path} are not decodable images: ${rejected.join('; ')}`,
      'InvalidDataset',
    );
  }
  if (images.length > MAX_IMAGES) {
    throw ApplicationFailure.nonRetryable(`${dataset.path} has ${images.length} images; at most ${MAX_IMAGES} can be trained on`, 'InvalidDataset');
  }
  if (!images.length) {
    throw ApplicationFailure.nonRetryable(`no images in ${dataset.path} (looked for ${[...IMAGE_EXT].join(', ')})`, 'InvalidDataset');
  }

  // Dedupe by content. Among copies, one with a sidecar caption wins, then the first name
  // (sorted), so the manifest is reproducible.
  images.sort((a, b) => a.source.localeCompare(b.source));
  const unique = new Map<string, DatasetManifestImage>();
  for (const image of images) {
    const caption = sidecars.get(stem(image.source));
    const kept = unique.get(image.id);
    if (!kept || (caption && !kept.caption)) unique.set(image.id, caption ? { ...image, caption } : image);
  }
  const manifest: DatasetManifest = { version: 1, images: [...unique.values()].sort((a, b) => a.id.localeCompare(b.id)) };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const manifestSha256 = sha256(bytes);
  const manifestKey = manifestKeyOf(manifestSha256);
  if (!(await exists(deps.storage, manifestKey))) await putBytes(deps.storage, manifestKey, bytes, 'application/json');

  log.info('dataset ingested', { images: manifest.images.length, duplicates: images.length - unique.size, manifestSha256 });
  return {
    manifestKey,
    manifestSha256,
    imageCount: manifest.images.length,
    sidecarCaptions: manifest.images.filter((i) => i.caption).length,
    duplicatesDropped: images.length - unique.size,
  };
}

/** Decodes fully (so truncated files fail here, not on the GPU) and re-encodes as PNG without metadata. */
function decode(input: Buffer) {
  return sharp(input, { limitInputPixels: MAX_PIXELS, failOn: 'error' })
    .rotate() // apply EXIF orientation before the metadata goes
    .png()
    .toBuffer({ resolveWithObject: true });
}

/** Content-addressed: an image already stored is not written again. */
async function storeImage(deps: ActivityDeps, source: string, { data, info }: Awaited<ReturnType<typeof decode>>): Promise<DatasetManifestImage> {
  const id = sha256(data);
  const key = imageKey(id);
  if (!(await exists(deps.storage, key))) await putBytes(deps.storage, key, data, 'image/png');
  return { id, key, source, width: info.width, height: info.height };
}

const stem = (name: string) => name.slice(0, name.length - path.extname(name).length);
