// Every object under an s3://bucket/prefix/, read lazily with the worker's own S3 credentials. Those
// credentials reach loraflow's own store too, so a source must name a bucket of
// LORAFLOW_DATASET_BUCKETS, and never one of loraflow's own prefixes (other runs' images,
// checkpoints, claims). The prefix ends at a "/": `s3://b/photos` does not take in `photos-old/`.
// A prefix holding a single .zip (an API upload) is read as that zip.
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { heartbeat } from '@temporalio/activity';
import { INTERNAL_PREFIXES } from '../lib/keys.js';
import { parseS3Source } from '../lib/s3-source.js';
import { BadFile, type DatasetFile, invalid, MAX_FILE_BYTES, MAX_FILES, type OpenedDataset } from './dataset-files.js';
import type { ActivityDeps } from './deps.js';

export async function fromS3(deps: ActivityDeps, source: string): Promise<DatasetFile[]> {
  let parsed;
  try {
    parsed = parseS3Source(source);
  } catch (err) {
    throw invalid((err as Error).message);
  }
  const { bucket, prefix } = parsed;
  if (!deps.datasets.buckets.includes(bucket)) {
    throw invalid(`${source}: bucket ${bucket} is not a dataset bucket (LORAFLOW_DATASET_BUCKETS)`);
  }
  if (bucket === deps.storage.bucket) {
    const own = INTERNAL_PREFIXES.find((p) => prefix.startsWith(p) || p.startsWith(prefix));
    if (own !== undefined) throw invalid(`${source}: ${prefix ? own : 'the whole bucket'} holds loraflow's own files: name a prefix outside ${INTERNAL_PREFIXES.join(', ')}`);
  }

  const files: DatasetFile[] = [];
  let token: string | undefined;
  do {
    const page = await deps.storage.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const object of page.Contents ?? []) {
      const key = object.Key!;
      if (key.endsWith('/')) continue;
      if (files.length >= MAX_FILES) throw invalid(`${source}: more than ${MAX_FILES} objects`);
      files.push({ name: key.slice(prefix.length), bytes: object.Size ?? 0, read: () => readCapped(deps, bucket, key) });
    }
    token = page.NextContinuationToken;
  } while (token);
  if (!files.length) throw invalid(`no objects under ${source}`);
  return files.sort((a, b) => a.name.localeCompare(b.name));
}

/** Heartbeats while a large zip streams in, so a slow download is not taken for a dead activity (throttled by the SDK). */
function beat(bytes: number): void {
  try {
    heartbeat({ bytes });
  } catch {
    // outside an activity (benchmarks, tests of the source alone)
  }
}

/** The one .zip under a source (already checked by fromS3): streamed to a private temp file, capped at
 * LORAFLOW_DATASET_MAX_BYTES while streaming, and read like a local zip; the file goes on close. */
export async function zipFromS3(deps: ActivityDeps, source: string, name: string, openZip: (file: string) => Promise<OpenedDataset>): Promise<OpenedDataset> {
  const { bucket, prefix } = parseS3Source(source);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'loraflow-dataset-'));
  const file = path.join(dir, 'dataset.zip');
  try {
    const res = await deps.storage.client.send(new GetObjectCommand({ Bucket: bucket, Key: `${prefix}${name}` }));
    let size = 0;
    const cap = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        beat(size);
        done(size > deps.datasets.maxBytes ? invalid(`${source}${name}: larger than LORAFLOW_DATASET_MAX_BYTES (${deps.datasets.maxBytes} bytes)`) : null, chunk);
      },
    });
    await pipeline(res.Body as Readable, cap, createWriteStream(file));
    const opened = await openZip(file);
    return { files: opened.files, close: async () => (await opened.close(), await rm(dir, { recursive: true, force: true })) };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** The object's bytes, refused past MAX_FILE_BYTES while streaming (it may have grown since the listing). */
async function readCapped(deps: ActivityDeps, bucket: string, key: string): Promise<Buffer> {
  const res = await deps.storage.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.Body as Readable) {
    size += (chunk as Buffer).length;
    if (size > MAX_FILE_BYTES) {
      (res.Body as Readable).destroy();
      throw new BadFile(`larger than ${MAX_FILE_BYTES} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
