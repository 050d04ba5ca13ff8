// Every object under an s3://bucket/prefix/, read lazily with the worker's own S3 credentials. Those
// credentials reach loraflow's own store too, so a source must name a bucket of
// LORAFLOW_DATASET_BUCKETS, and never one of loraflow's own prefixes (other runs' images,
// checkpoints, claims). The prefix ends at a "/": `s3://b/photos` does not take in `photos-old/`.
import type { Readable } from 'node:stream';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { INTERNAL_PREFIXES } from '../lib/keys.js';
import { parseS3Source } from '../lib/s3-source.js';
import { BadFile, type DatasetFile, invalid, MAX_FILE_BYTES, MAX_FILES } from './dataset-files.js';
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
