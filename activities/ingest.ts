// ingest: a dataset source (dataset-source.ts) → decoded, metadata-stripped, deduplicated images
// stored content-addressed in S3, plus a manifest whose sha256 identifies the dataset. Nothing is
// written until every file has been judged: a dataset that fails leaves nothing behind in S3.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ApplicationFailure, heartbeat, log } from '@temporalio/activity';
import sharp from 'sharp';
import { z } from 'zod';
import { Sha256 } from '../contract/gpu-job.js';
import type { DatasetManifest, DatasetManifestImage, IngestResult, SkippedFile } from '../contract/pipeline.js';
import { sha256 } from '../lib/hash.js';
import { imageKey, manifestKey as manifestKeyOf } from '../lib/keys.js';
import { exists, putBytes } from '../lib/s3.js';
import { BadFile, classify, type DatasetFile, IMAGE_EXTENSIONS, invalid, MAX_FILE_BYTES } from './dataset-files.js';
import { openDataset } from './dataset-source.js';
import type { ActivityDeps } from './deps.js';
import { parseInput } from './input.js';

export const IngestInput = z.object({ dataset: z.object({ path: z.string().min(1), fingerprint: Sha256 }) });

/** Larger inputs are refused before decoding (decompression bombs). */
const MAX_PIXELS = 40_000_000;
/** The GPU job contract's limit (contract/gpu-job.ts). */
const MAX_IMAGES = 5000;
/** How many skipped files the result names (all are counted). */
const MAX_LISTED = 100;

interface Decoded extends DatasetManifestImage {
  /** The metadata-free PNG, on local disk until the whole dataset has passed. */
  file: string;
}

export async function ingestDataset(deps: ActivityDeps, raw: z.input<typeof IngestInput>): Promise<IngestResult> {
  const { dataset } = parseInput(IngestInput, raw);
  const shown = dataset.path.replace(/\?.*$/, ''); // a URL's query string may be a signature
  const opened = await openDataset(deps, dataset.path);
  const work = await mkdtemp(path.join(os.tmpdir(), 'loraflow-ingest-'));
  try {
    return await ingestFiles(deps, shown, opened.files, work);
  } finally {
    await opened.close();
    await rm(work, { recursive: true, force: true });
  }
}

async function ingestFiles(deps: ActivityDeps, shown: string, files: DatasetFile[], work: string): Promise<IngestResult> {
  const candidates: DatasetFile[] = [];
  const sidecarFiles: DatasetFile[] = [];
  const skipped: SkippedFile[] = [];
  for (const file of files) {
    const kind = classify(file.name);
    if (kind.kind === 'image') candidates.push(file);
    else if (kind.kind === 'sidecar') sidecarFiles.push(file);
    else if (kind.kind === 'skipped') skipped.push({ name: file.name, reason: kind.reason });
  }
  // Counted before anything is decoded or stored.
  if (candidates.length > MAX_IMAGES) throw invalid(`${shown} has ${candidates.length} images; at most ${MAX_IMAGES} can be trained on`);
  if (!candidates.length) {
    const seen = skipped.length ? `; skipped: ${listed(skipped)}` : '';
    throw invalid(`no images in ${shown} (looked for ${IMAGE_EXTENSIONS().join(', ')})${seen}`);
  }

  const rejected: string[] = [];
  const reject = (file: DatasetFile, err: unknown) => void rejected.push(`${file.name} (${err instanceof Error ? err.message : String(err)})`);
  /** The file's bytes, or undefined when the file itself is at fault (recorded); other errors propagate. */
  const read = (file: DatasetFile) =>
    readOwn(file).catch((err: unknown) => {
      if (!(err instanceof BadFile)) throw err;
      reject(file, err);
      return undefined;
    });
  const total = candidates.length + sidecarFiles.length;
  let done = 0;
  const sidecars = new Map<string, string>();
  for (const file of sidecarFiles) {
    const bytes = await read(file);
    const caption = bytes?.toString('utf8').trim();
    if (caption) sidecars.set(stem(file.name), caption.slice(0, 1000));
    heartbeat({ phase: 'decode', done: ++done, total });
  }
  const images: Decoded[] = [];
  for (const file of candidates) {
    const bytes = await read(file);
    const decoded = bytes && (await decode(bytes).catch((err: unknown) => void reject(file, err)));
    if (decoded) {
      const id = sha256(decoded.data);
      const local = path.join(work, `${images.length}.png`);
      await writeFile(local, decoded.data);
      images.push({ id, key: imageKey(id), source: file.name, width: decoded.info.width, height: decoded.info.height, file: local });
    }
    heartbeat({ phase: 'decode', done: ++done, total });
  }
  if (rejected.length) throw invalid(`${rejected.length} file(s) in ${shown} are not decodable images: ${rejected.join('; ')}`);

  // Dedupe by content. Among copies, one with a sidecar caption wins, then the first name
  // (sorted), so the manifest is reproducible.
  images.sort((a, b) => a.source.localeCompare(b.source));
  const unique = new Map<string, Decoded>();
  for (const image of images) {
    const caption = sidecars.get(stem(image.source));
    const kept = unique.get(image.id);
    if (!kept || (caption && !kept.caption)) unique.set(image.id, caption ? { ...image, caption } : image);
  }
  const chosen = [...unique.values()].sort((a, b) => a.id.localeCompare(b.id));
  // Only now does anything reach S3: content-addressed images first, the manifest last, so a
  // manifest never names a missing image (a storage error here is retried and resumes).
  let stored = 0;
  for (const image of chosen) {
    if (!(await exists(deps.storage, image.key))) await putBytes(deps.storage, image.key, await readFile(image.file), 'image/png');
    heartbeat({ phase: 'store', done: ++stored, total: chosen.length });
  }
  const manifest: DatasetManifest = { version: 1, images: chosen.map(({ file: _file, ...image }) => image) };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const manifestSha256 = sha256(bytes);
  const manifestKey = manifestKeyOf(manifestSha256);
  if (!(await exists(deps.storage, manifestKey))) await putBytes(deps.storage, manifestKey, bytes, 'application/json');

  if (skipped.length) log.warn('dataset files skipped', { count: skipped.length, files: listed(skipped) });
  log.info('dataset ingested', { images: manifest.images.length, duplicates: images.length - unique.size, skipped: skipped.length, manifestSha256 });
  return {
    manifestKey,
    manifestSha256,
    imageCount: manifest.images.length,
    sidecarCaptions: manifest.images.filter((i) => i.caption).length,
    duplicatesDropped: images.length - unique.size,
    ...(skipped.length ? { skipped: skipped.slice(0, MAX_LISTED), skippedCount: skipped.length } : {}),
  };
}

/** The file's bytes; its size is checked first where the source knows it. */
async function readOwn(file: DatasetFile): Promise<Buffer> {
  if (file.bytes !== undefined && file.bytes > MAX_FILE_BYTES) throw new BadFile(`larger than ${MAX_FILE_BYTES} bytes`);
  try {
    return await file.read();
  } catch (err) {
    // Storage errors are not the file's fault: they propagate, and the activity is retried.
    if (err instanceof BadFile) throw err;
    throw err instanceof ApplicationFailure ? err : ApplicationFailure.retryable(`reading ${file.name}: ${err instanceof Error ? err.message : String(err)}`, 'DatasetUnavailable');
  }
}

/** Decodes fully (so truncated files fail here, not on the GPU) and re-encodes as PNG without
 * metadata; an animated GIF or multi-page TIFF gives its first frame. */
async function decode(input: Buffer) {
  return sharp(input, { limitInputPixels: MAX_PIXELS, failOn: 'error', pages: 1 }) // throws at once on an empty file: inside the promise
    .rotate() // apply EXIF orientation before the metadata goes
    .png()
    .toBuffer({ resolveWithObject: true });
}

const listed = (files: SkippedFile[]) =>
  files.slice(0, 20).map((f) => `${f.name} (${f.reason})`).join('; ') + (files.length > 20 ? `; and ${files.length - 20} more` : '');

const stem = (name: string) => name.slice(0, name.length - path.extname(name).length);
