// Turns image URLs (seed 000) or base64 files (seed 004) into an upload in S3, so the pipeline reads
// them as any s3:// dataset. URLs are checked like dataset URLs (lib/url-guard.ts) and fetched over
// the checked address with the dataset limits (lib/pinned-download.ts); nothing is kept on disk.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sha256 } from '../../lib/hash.js';
import { downloadPinned } from '../../lib/pinned-download.js';
import { putBytes } from '../../lib/s3.js';
import { resolveFetchable } from '../../lib/url-guard.js';
import type { ApiDeps } from '../context.js';
import { ApiError } from '../errors.js';
import { uploadPrefix } from '../routes/uploads.js';

const EXTENSION = /\.(png|jpe?g|webp|txt)$/i;
/** One image over this is refused (the pipeline's own per-file cap is larger; a seed client sends photos). */
const MAX_IMAGE_BYTES = 50 * 2 ** 20;

/** What the bytes are, by their magic number (a URL's path need not end in an extension). */
function imageExtension(b: Buffer): string | undefined {
  if (b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return '.png';
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return '.jpg';
  if (b.subarray(0, 4).toString('latin1') === 'RIFF' && b.subarray(8, 12).toString('latin1') === 'WEBP') return '.webp';
  return undefined;
}

/** The same URLs give the same upload id, so the same request twice is the same dataset and the same run. */
export async function uploadFromUrls(deps: ApiDeps, urls: string[], field: string): Promise<string> {
  const uploadId = `up-${sha256(JSON.stringify(urls)).slice(0, 32)}`;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'loraflow-gateway-'));
  try {
    for (const [i, raw] of urls.entries()) {
      const url = new URL(raw);
      const shown = `${url.origin}${url.pathname}`; // never the query: it may be a signature
      const address = await resolveFetchable(url, { allowInternal: deps.config.LORAFLOW_ALLOW_PRIVATE_URLS }).catch((err: Error) => {
        throw new ApiError(400, 'invalid_request', `${field}.${i}: ${shown}: ${err.message}`, `${field}.${i}`);
      });
      const file = path.join(dir, String(i));
      await downloadPinned(url, address, file, {
        connectTimeoutMs: deps.config.LORAFLOW_DATASET_CONNECT_TIMEOUT_MS,
        readTimeoutMs: deps.config.LORAFLOW_DATASET_READ_TIMEOUT_MS,
        maxBytes: MAX_IMAGE_BYTES,
      }).catch((err: Error) => {
        throw new ApiError(400, 'invalid_request', `${field}.${i}: ${shown}: ${err.message}`, `${field}.${i}`);
      });
      const bytes = await readFile(file);
      const ext = imageExtension(bytes);
      if (!ext) throw new ApiError(400, 'invalid_request', `${field}.${i}: ${shown} is not a PNG, JPEG or WebP image`, `${field}.${i}`);
      await putBytes(deps.storage, `${uploadPrefix(uploadId)}${String(i).padStart(4, '0')}${ext}`, bytes, 'application/octet-stream');
      await rm(file, { force: true });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return uploadId;
}

/** seed 004's training data: `uploads/td-<name>/`, added to by each upload_training_data call. */
export const trainingDataUpload = (trainingName: string) => `td-${sha256(trainingName).slice(0, 32)}`;

export async function uploadBase64(deps: ApiDeps, trainingName: string, files: { filename: string; content: string }[]): Promise<string[]> {
  const uploadId = trainingDataUpload(trainingName);
  const stored: string[] = [];
  for (const [i, f] of files.entries()) {
    const name = path.basename(f.filename);
    if (!/^[A-Za-z0-9][A-Za-z0-9._ -]{0,199}$/.test(name) || !EXTENSION.test(name)) throw new ApiError(400, 'invalid_request', `input.files.${i}.filename: a plain .png, .jpg, .webp or .txt file name`, `input.files.${i}.filename`);
    if (!/^[A-Za-z0-9+/=\s]*$/.test(f.content)) throw new ApiError(400, 'invalid_request', `input.files.${i}.content: not base64`, `input.files.${i}.content`);
    await putBytes(deps.storage, `${uploadPrefix(uploadId)}${name}`, Buffer.from(f.content, 'base64'), 'application/octet-stream');
    stored.push(name);
  }
  return stored;
}
