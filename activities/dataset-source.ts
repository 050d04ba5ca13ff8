// Where a dataset comes from: a directory or .zip on this machine, an http(s) URL of a .zip
// (internal addresses refused unless allowed), or every object under an s3://bucket/prefix.
import { createWriteStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { ApplicationFailure } from '@temporalio/activity';
import { assertFetchable } from '../lib/url-guard.js';
import { DEFAULT_ZIP_LIMITS, readZip } from '../lib/zip.js';
import type { ActivityDeps } from './deps.js';

export interface DatasetFile {
  name: string;
  read(): Promise<Buffer>;
}

const invalid = (message: string) => ApplicationFailure.nonRetryable(message, 'InvalidDataset');

export async function openDataset(deps: ActivityDeps, source: string): Promise<DatasetFile[]> {
  if (/^https?:\/\//i.test(source)) return fromUrl(source, deps.allowPrivateUrls ?? false);
  if (source.startsWith('s3://')) return fromS3(deps, source);
  return fromLocalPath(source);
}

async function fromLocalPath(datasetPath: string): Promise<DatasetFile[]> {
  const info = await stat(datasetPath).catch(() => undefined);
  if (!info) throw invalid(`dataset not found: ${datasetPath}`);
  if (info.isFile() && datasetPath.toLowerCase().endsWith('.zip')) return fromZip(datasetPath);
  if (!info.isDirectory()) throw invalid(`dataset must be a directory or a .zip: ${datasetPath}`);
  const entries = await readdir(datasetPath, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile()) // symlinks are not followed
    .map((e) => {
      const full = path.join(e.parentPath, e.name);
      return { name: path.relative(datasetPath, full), read: () => readFile(full) };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

async function fromZip(file: string): Promise<DatasetFile[]> {
  const entries = await readZip(file).catch((err: Error) => {
    throw invalid(err.message);
  });
  return entries.map((e) => ({ name: e.name, read: async () => e.data }));
}

/** Downloads the .zip to a temp file (size-capped), then reads it like a local one. */
async function fromUrl(source: string, allowPrivate: boolean): Promise<DatasetFile[]> {
  const url = new URL(source);
  const shown = `${url.origin}${url.pathname}`; // never the query string: it may be a signature
  await assertFetchable(url, allowPrivate).catch((err: Error) => {
    throw invalid(`${shown}: ${err.message}`);
  });
  // Redirects are not followed: each hop would need the same address check.
  const response = await fetch(url, { redirect: 'manual' });
  if (response.status >= 300 && response.status < 400) throw invalid(`${shown}: redirects are not followed (HTTP ${response.status})`);
  if (response.status >= 500) throw ApplicationFailure.retryable(`${shown}: HTTP ${response.status}`, 'DatasetUnavailable');
  if (!response.ok || !response.body) throw invalid(`${shown}: HTTP ${response.status}`);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'loraflow-dataset-'));
  try {
    const file = path.join(dir, 'dataset.zip');
    let bytes = 0;
    const capped = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream).on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > DEFAULT_ZIP_LIMITS.maxTotalBytes) capped.destroy(invalid(`${shown}: larger than ${DEFAULT_ZIP_LIMITS.maxTotalBytes} bytes`));
    });
    await pipeline(capped, createWriteStream(file));
    return await fromZip(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Every object under the prefix, read lazily with the worker's own S3 credentials. */
async function fromS3(deps: ActivityDeps, source: string): Promise<DatasetFile[]> {
  const match = /^s3:\/\/([^/]+)\/?(.*)$/.exec(source);
  if (!match) throw invalid(`not an s3:// dataset: ${source}`);
  const [, bucket, prefix] = match as unknown as [string, string, string];
  const files: DatasetFile[] = [];
  let token: string | undefined;
  do {
    const page = await deps.storage.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const object of page.Contents ?? []) {
      const key = object.Key!;
      if (key.endsWith('/')) continue;
      files.push({
        name: key.slice(prefix.length).replace(/^\/+/, ''),
        read: async () => {
          const res = await deps.storage.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
          return Buffer.from(await res.Body!.transformToByteArray());
        },
      });
    }
    token = page.NextContinuationToken;
  } while (token);
  if (!files.length) throw invalid(`no objects under ${source}`);
  return files.sort((a, b) => a.name.localeCompare(b.name));
}
