// ingest: a dataset source (dataset-source.ts) → validated, metadata-stripped, deduplicated images
// (ingest-image.ts: each kept in its own encoding where that is safe, else re-encoded as PNG)
// stored content-addressed in S3, plus a manifest whose sha256 identifies the dataset. Nothing is
// written until every file has been judged: a dataset that fails leaves nothing behind in S3.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ApplicationFailure, heartbeat, log } from '@temporalio/activity';
import { z } from 'zod';
import { Sha256 } from '../contract/gpu-job.js';
import type { DatasetManifest, DatasetManifestImage, IngestResult, SkippedFile } from '../contract/pipeline.js';
import { sha256 } from '../lib/hash.js';
import { imageKey, manifestKey as manifestKeyOf } from '../lib/keys.js';
import { eachLimit } from '../lib/pool.js';
import { exists, putBytes } from '../lib/s3.js';
import { BadFile, classify, type DatasetFile, IMAGE_EXTENSIONS, invalid, MAX_FILE_BYTES } from './dataset-files.js';
import { openDataset } from './dataset-source.js';
import { CONTENT_TYPES, judgeImage } from './ingest-image.js';
import type { ActivityDeps } from './deps.js';
import { parseInput } from './input.js';

export const IngestInput = z.object({ dataset: z.object({ path: z.string().min(1), fingerprint: Sha256 }) });

/** Files read and judged at once: enough to keep every core decoding while others wait on reads, few
 * enough that the full-size decodes of re-encoded images (up to MAX_PIXELS each) fit in memory. */
const INGEST_CONCURRENCY = Math.min(8, Math.max(4, os.availableParallelism()));
/** Images uploaded at once (each its own PUT). */
const STORE_CONCURRENCY = 8;
/** The GPU job contract's limit (contract/gpu-job.ts). */
const MAX_IMAGES = 5000;
/** How many skipped files the result names (all are counted). */
const MAX_LISTED = 100;

interface Judged extends DatasetManifestImage {
  /** The bytes to store (metadata removed), on local disk until the whole dataset has passed. */
  file: string;
  contentType: string;
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

  // Every file is read and judged INGEST_CONCURRENCY at a time (sharp decodes on libuv's threads);
  // what is kept waits on local disk, not in memory, until the whole dataset has passed.
  const rejections: { index: number; text: string }[] = [];
  // libvips reports one line per failing stage: joined, so the message stays one line.
  const reject = (index: number, file: DatasetFile, err: unknown) =>
    void rejections.push({ index, text: `${file.name} (${(err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').trim()})` });
  /** The file's bytes, or undefined when the file itself is at fault (recorded); other errors propagate. */
  const read = (file: DatasetFile, index: number) =>
    readOwn(file).catch((err: unknown) => {
      if (!(err instanceof BadFile)) throw err;
      reject(index, file, err);
      return undefined;
    });
  const total = candidates.length + sidecarFiles.length;
  let done = 0;
  const sidecars = new Map<string, string>();
  await eachLimit(sidecarFiles, INGEST_CONCURRENCY, async (file, i) => {
    const bytes = await read(file, i);
    const caption = bytes?.toString('utf8').trim();
    if (caption) sidecars.set(stem(file.name), caption.slice(0, 1000));
    heartbeat({ phase: 'decode', done: ++done, total });
  });
  const judged: (Judged | undefined)[] = new Array(candidates.length);
  let reencoded = 0;
  await eachLimit(candidates, INGEST_CONCURRENCY, async (file, i) => {
    const bytes = await read(file, sidecarFiles.length + i);
    const image = bytes && (await judgeImage(bytes).catch((err: unknown) => void reject(sidecarFiles.length + i, file, err)));
    if (image) {
      const id = sha256(image.data);
      const local = path.join(work, String(i));
      await writeFile(local, image.data);
      if (image.reencoded) reencoded++;
      judged[i] = { id, key: imageKey(id, image.format), source: file.name, width: image.width, height: image.height, file: local, contentType: CONTENT_TYPES[image.format] };
    }
    heartbeat({ phase: 'decode', done: ++done, total });
  });
  if (rejections.length) {
    const named = rejections.sort((a, b) => a.index - b.index).map((r) => r.text);
    throw invalid(`${named.length} file(s) in ${shown} are not decodable images: ${named.join('; ')}`);
  }
  const images = judged.filter((image) => image !== undefined);

  // Dedupe by content (the stored bytes). Among copies, one with a sidecar caption wins, then the
  // first name (sorted), so the manifest is reproducible.
  images.sort((a, b) => a.source.localeCompare(b.source));
  const unique = new Map<string, Judged>();
  for (const image of images) {
    const caption = sidecars.get(stem(image.source));
    const kept = unique.get(image.id);
    if (!kept || (caption && !kept.caption)) unique.set(image.id, caption ? { ...image, caption } : image);
  }
  const chosen = [...unique.values()].sort((a, b) => a.id.localeCompare(b.id));
  // Only now does anything reach S3: content-addressed images first (STORE_CONCURRENCY at a time),
  // the manifest last, so a manifest never names a missing image (a storage error here is retried
  // and resumes).
  let stored = 0;
  await eachLimit(chosen, STORE_CONCURRENCY, async (image) => {
    if (!(await exists(deps.storage, image.key))) await putBytes(deps.storage, image.key, await readFile(image.file), image.contentType);
    heartbeat({ phase: 'store', done: ++stored, total: chosen.length });
  });
  const manifest: DatasetManifest = { version: 1, images: chosen.map(({ file: _file, contentType: _type, ...image }) => image) };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const manifestSha256 = sha256(bytes);
  const manifestKey = manifestKeyOf(manifestSha256);
  if (!(await exists(deps.storage, manifestKey))) await putBytes(deps.storage, manifestKey, bytes, 'application/json');

  if (skipped.length) log.warn('dataset files skipped', { count: skipped.length, files: listed(skipped) });
  log.info('dataset ingested', { images: manifest.images.length, reencoded, duplicates: images.length - unique.size, skipped: skipped.length, manifestSha256 });
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

const listed = (files: SkippedFile[]) =>
  files.slice(0, 20).map((f) => `${f.name} (${f.reason})`).join('; ') + (files.length > 20 ? `; and ${files.length - 20} more` : '');

const stem = (name: string) => name.slice(0, name.length - path.extname(name).length);
