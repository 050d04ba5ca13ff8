// Identifies a dataset by its bytes, so the same request on the same files maps to one workflow
// and a changed dataset starts a new one.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { Config } from '../lib/config.js';
import { makeStorage } from '../lib/s3.js';
import { parseS3Source } from '../lib/s3-source.js';

export async function fingerprintDataset(datasetPath: string, config?: Config): Promise<string> {
  // A URL is identified by itself (its content is fetched by the worker); an S3 prefix by its
  // objects' keys and ETags.
  if (/^https?:\/\//i.test(datasetPath)) return createHash('sha256').update(datasetPath).digest('hex');
  if (datasetPath.startsWith('s3://') && config) return fingerprintS3(datasetPath, config);
  const info = await stat(datasetPath).catch(() => undefined);
  if (!info) throw new Error(`--images: ${datasetPath} does not exist`);
  const files = info.isDirectory()
    ? (await readdir(datasetPath, { recursive: true, withFileTypes: true }))
        .filter((e) => e.isFile())
        .map((e) => path.join(e.parentPath, e.name))
        .sort()
    : [datasetPath];
  const all = createHash('sha256');
  for (const file of files) {
    const one = createHash('sha256');
    await pipeline(createReadStream(file), one);
    all.update(`${path.relative(datasetPath, file)}\0${one.digest('hex')}\n`);
  }
  return all.digest('hex');
}

async function fingerprintS3(source: string, config: Config): Promise<string> {
  // The same bucket and prefix ingest reads (a prefix ends at "/"), so the fingerprint covers what is trained on.
  const { bucket, prefix } = (() => {
    try {
      return parseS3Source(source);
    } catch (err) {
      throw new Error(`--images: ${(err as Error).message}`);
    }
  })();
  const { client } = makeStorage(config);
  const all = createHash('sha256');
  let token: string | undefined;
  let count = 0;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) all.update(`${o.Key}\0${o.ETag}\n`), count++;
    token = page.NextContinuationToken;
  } while (token);
  if (!count) throw new Error(`--images: no objects under ${source}`);
  return all.digest('hex');
}
