// S3 access for activities: path-style (works with any S3-compatible server and AWS),
// content-addressed writes, streaming sha256 checks, short-lived presigned URLs, and an object
// as a streaming Blob (for uploads elsewhere without holding it in memory).
import { createHash, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  CopyObjectCommand,
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NotFound,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { Config } from './config.js';

// The pinned SDK supports Node 20; its warning concerns releases after January 2027 and would
// otherwise be printed by every CLI command.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export interface Storage {
  client: S3Client;
  bucket: string;
}

/** Sockets per S3 client (the SDK defaults to 50): requests past them wait in the pool. */
const S3_MAX_SOCKETS = 256;

export function makeStorage(
  config: Pick<Config, 'LORAFLOW_S3_ENDPOINT' | 'LORAFLOW_S3_BUCKET' | 'AWS_REGION' | 'AWS_ACCESS_KEY_ID' | 'AWS_SECRET_ACCESS_KEY' | 'LORAFLOW_S3_TIMEOUT_MS'>,
): Storage {
  const client = new S3Client({
    endpoint: config.LORAFLOW_S3_ENDPOINT,
    region: config.AWS_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: config.AWS_ACCESS_KEY_ID, secretAccessKey: config.AWS_SECRET_ACCESS_KEY },
    // Presigned PUTs are sent by a worker that cannot add checksum headers: sign none.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // A store that accepts connections but never answers must not hang an activity: the request
    // fails (and is retried) after this long without progress.
    // The connection timer starts while a request still waits for a free socket of the pool, so a
    // burst (a thousand GPU stages starting at once) behind the SDK's 50 sockets timed out as if
    // the store were unreachable; a larger pool keeps that wait short.
    requestHandler: {
      connectionTimeout: Math.min(10_000, config.LORAFLOW_S3_TIMEOUT_MS),
      requestTimeout: config.LORAFLOW_S3_TIMEOUT_MS,
      httpAgent: { maxSockets: S3_MAX_SOCKETS },
      httpsAgent: { maxSockets: S3_MAX_SOCKETS },
    },
    maxAttempts: 3,
  });
  return { client, bucket: config.LORAFLOW_S3_BUCKET };
}

export const s3Uri = (s: Storage, key: string) => `s3://${s.bucket}/${key}`;

export async function ensureBucket(s: Storage): Promise<void> {
  try {
    await s.client.send(new HeadBucketCommand({ Bucket: s.bucket }));
  } catch {
    await s.client.send(new CreateBucketCommand({ Bucket: s.bucket })).catch((err: unknown) => {
      if (!(err instanceof S3ServiceException && err.name === 'BucketAlreadyOwnedByYou')) throw err;
    });
  }
}

export async function exists(s: Storage, key: string): Promise<{ bytes: number } | undefined> {
  try {
    const head = await s.client.send(new HeadObjectCommand({ Bucket: s.bucket, Key: key }));
    return { bytes: head.ContentLength ?? 0 };
  } catch (err) {
    if (err instanceof NotFound || (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404)) return undefined;
    throw err;
  }
}

export async function putBytes(s: Storage, key: string, body: Uint8Array | string, contentType: string): Promise<void> {
  await s.client.send(new PutObjectCommand({ Bucket: s.bucket, Key: key, Body: body, ContentType: contentType }));
}

/** Writes `key` only if it does not exist yet (If-None-Match: *): false when it already did (412).
 * A conflicting write in flight (409) is asked again. */
export async function putBytesIfAbsent(s: Storage, key: string, body: string, contentType: string): Promise<boolean> {
  for (let attempt = 0; ; attempt++) {
    try {
      await s.client.send(new PutObjectCommand({ Bucket: s.bucket, Key: key, Body: body, ContentType: contentType, IfNoneMatch: '*' }));
      return true;
    } catch (err) {
      const status = err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
      if (status === 412) return false;
      if (status !== 409 || attempt >= 5) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

export async function getBytes(s: Storage, key: string): Promise<Buffer> {
  const res = await s.client.send(new GetObjectCommand({ Bucket: s.bucket, Key: key }));
  return Buffer.from(await res.Body!.transformToByteArray());
}

/** The object's bytes, or undefined when it does not exist (one request, no HEAD first). */
export async function getBytesIfExists(s: Storage, key: string): Promise<Buffer | undefined> {
  try {
    return await getBytes(s, key);
  } catch (err) {
    if (err instanceof S3ServiceException && (err.name === 'NoSuchKey' || err.$metadata.httpStatusCode === 404)) return undefined;
    throw err;
  }
}

export async function getJson<T>(s: Storage, key: string): Promise<T> {
  return JSON.parse((await getBytes(s, key)).toString('utf8')) as T;
}

/** Streams the object through sha256; undefined when it does not exist. `etag` names the very
 * bytes hashed, so a copy can require them (copyObject's `ifMatch`). */
export async function sha256OfObject(s: Storage, key: string): Promise<{ sha256: string; bytes: number; etag: string } | undefined> {
  let res;
  try {
    res = await s.client.send(new GetObjectCommand({ Bucket: s.bucket, Key: key }));
  } catch (err) {
    if (err instanceof S3ServiceException && (err.name === 'NoSuchKey' || err.$metadata.httpStatusCode === 404)) return undefined;
    throw err;
  }
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of res.Body as Readable) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes, etag: res.ETag ?? '' };
}

/** The source changed since its ETag was read (a copy with `ifMatch` refused). */
export class SourceChanged extends Error {
  override name = 'SourceChanged';
}

/** Server-side copy; with `ifMatch`, only if the source still has that ETag (else SourceChanged). */
export async function copyObject(s: Storage, from: string, to: string, opts: { ifMatch?: string } = {}): Promise<void> {
  try {
    await s.client.send(new CopyObjectCommand({ Bucket: s.bucket, CopySource: `${s.bucket}/${from}`, Key: to, ...(opts.ifMatch ? { CopySourceIfMatch: opts.ifMatch } : {}) }));
  } catch (err) {
    if (opts.ifMatch && err instanceof S3ServiceException && (err.name === 'PreconditionFailed' || err.$metadata.httpStatusCode === 412)) {
      throw new SourceChanged(`${from} changed after it was verified`);
    }
    throw err;
  }
}

export async function deleteObject(s: Storage, key: string): Promise<void> {
  await s.client.send(new DeleteObjectCommand({ Bucket: s.bucket, Key: key }));
}

/**
 * Write-once claims need the store to enforce `If-None-Match: *` on PUT. Some S3-compatible stores
 * do not (Backblaze B2 answers NotImplemented; Google Cloud Storage's XML API ignores the header
 * and overwrites), and there a claim would let two GPU jobs train the same thing. PUT one key
 * twice, expect 412 the second time; throws an error naming what the store lacks.
 */
export async function probeConditionalWrites(s: Storage, opts: { onUnreachable?: (err: unknown, attempt: number) => void } = {}): Promise<void> {
  // A store that is down for a moment is not a store without conditional writes: wait for an answer.
  for (let attempt = 1; ; attempt++) {
    try {
      return await probeOnce(s);
    } catch (err) {
      if (!unreachable(err)) throw err;
      opts.onUnreachable?.(err, attempt);
      await new Promise((resolve) => setTimeout(resolve, Math.min(10_000, 500 * 2 ** Math.min(attempt, 5))));
    }
  }
}

/** No answer from the store (refused, reset, timed out) or a 5xx: worth asking again. */
function unreachable(err: unknown): boolean {
  if (err instanceof S3ServiceException) return (err.$metadata.httpStatusCode ?? 0) >= 500 && err.name !== 'NotImplemented';
  return !(err instanceof Error && err.message.startsWith('the S3 store'));
}

async function probeOnce(s: Storage): Promise<void> {
  const key = `loraflow-probe/${randomUUID()}`;
  const where = `the S3 store at ${s.client.config.endpoint ? 'LORAFLOW_S3_ENDPOINT' : 'AWS'} (bucket ${s.bucket})`;
  const putOnce = () => s.client.send(new PutObjectCommand({ Bucket: s.bucket, Key: key, Body: 'probe', IfNoneMatch: '*' }));
  try {
    try {
      await putOnce();
    } catch (err) {
      if (unreachable(err)) throw err;
      const name = err instanceof S3ServiceException ? `${err.name} (HTTP ${err.$metadata.httpStatusCode})` : String(err);
      throw new Error(`${where} refused a conditional write (If-None-Match: *): ${name}. loraflow's write-once claims need conditional writes (AWS S3, Cloudflare R2, MinIO, versitygw have them; Backblaze B2 does not)`);
    }
    const second = await putOnce().then(
      () => 'overwritten' as const,
      (err: unknown) => (err instanceof S3ServiceException && (err.$metadata.httpStatusCode === 412 || err.name === 'PreconditionFailed') ? ('refused' as const) : err),
    );
    if (second === 'overwritten') {
      throw new Error(`${where} does not enforce conditional writes: a second PUT with If-None-Match: * overwrote the object instead of answering 412. loraflow's write-once claims need them (Google Cloud Storage's XML API ignores the header; AWS S3, Cloudflare R2, MinIO, versitygw enforce it)`);
    }
    if (second !== 'refused') throw second;
  } finally {
    await deleteObject(s, key).catch(() => undefined);
  }
}

/** Time kept between a URL's expiry and its credentials': clocks differ a little. */
const EXPIRY_MARGIN_S = 120;

/**
 * How long a URL signed now can really live: `wantedSeconds`, cut to what the signing credentials
 * have left. A URL signed with role credentials (STS, an instance or task role) stops working when
 * they expire, whatever its X-Amz-Expires says; static keys have no expiry.
 */
export async function urlLifetime(s: Storage, wantedSeconds: number): Promise<{ seconds: number; credentialsExpireAt?: Date }> {
  const { expiration } = await s.client.config.credentials();
  if (!expiration) return { seconds: wantedSeconds };
  const left = Math.floor((expiration.getTime() - Date.now()) / 1000) - EXPIRY_MARGIN_S;
  return { seconds: Math.max(1, Math.min(wantedSeconds, left)), credentialsExpireAt: expiration };
}

/** Presigned URLs live only inside activities and GPU job inputs, never in workflow history; each
 * is signed for at most what its credentials have left (urlLifetime). */
export const presignGet = async (s: Storage, key: string, expiresIn = 3600) =>
  getSignedUrl(s.client, new GetObjectCommand({ Bucket: s.bucket, Key: key }), { expiresIn: (await urlLifetime(s, expiresIn)).seconds });

export const presignPut = async (s: Storage, key: string, expiresIn = 6 * 3600) =>
  getSignedUrl(s.client, new PutObjectCommand({ Bucket: s.bucket, Key: key }), { expiresIn: (await urlLifetime(s, expiresIn)).seconds });

/** Keys under `prefix` with their last-modified times, oldest first. */
export async function listObjects(s: Storage, prefix: string): Promise<{ key: string; lastModified: Date }[]> {
  const objects: { key: string; lastModified: Date }[] = [];
  let token: string | undefined;
  do {
    const page = await s.client.send(new ListObjectsV2Command({ Bucket: s.bucket, Prefix: prefix, ContinuationToken: token }));
    objects.push(...(page.Contents ?? []).map((o) => ({ key: o.Key!, lastModified: o.LastModified ?? new Date(0) })));
    token = page.NextContinuationToken;
  } while (token);
  // Ties (S3 times are whole seconds) by key, numbers as numbers: generation 10 after generation 2.
  return objects.sort((a, b) => a.lastModified.getTime() - b.lastModified.getTime() || a.key.localeCompare(b.key, 'en', { numeric: true }));
}

export async function listKeys(s: Storage, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await s.client.send(new ListObjectsV2Command({ Bucket: s.bucket, Prefix: prefix, ContinuationToken: token }));
    keys.push(...(page.Contents ?? []).map((o) => o.Key!));
    token = page.NextContinuationToken;
  } while (token);
  return keys.sort();
}

/**
 * A presigned PUT that only succeeds if the object does not exist yet (`If-None-Match: *` is part of
 * the signature, so the holder cannot drop it): a write-once claim for a worker without credentials.
 */
export const presignPutIfAbsent = async (s: Storage, key: string, expiresIn = 12 * 3600) =>
  getSignedUrl(s.client, new PutObjectCommand({ Bucket: s.bucket, Key: key, IfNoneMatch: '*' }), {
    expiresIn: (await urlLifetime(s, expiresIn)).seconds,
    signableHeaders: new Set(['if-none-match']),
  });

/**
 * An S3 object (or a byte range of it) as a Blob: the library reads its size, slices it and
 * streams it (sha256, upload) without the whole LoRA ever being held in memory.
 */
export class S3ObjectBlob extends Blob {
  constructor(
    private readonly storage: Storage,
    private readonly key: string,
    private readonly start: number,
    private readonly end: number,
    private readonly contentType = 'application/octet-stream',
  ) {
    super([]);
  }

  override get size(): number {
    return this.end - this.start;
  }

  override get type(): string {
    return this.contentType;
  }

  override slice(start = 0, end = this.size, contentType?: string): Blob {
    const at = (i: number) => Math.min(this.size, Math.max(0, i < 0 ? this.size + i : i));
    const [from, to] = [at(start), at(end)];
    return new S3ObjectBlob(this.storage, this.key, this.start + from, this.start + Math.max(from, to), contentType ?? this.contentType);
  }

  override stream(): ReturnType<Blob['stream']> {
    if (this.size === 0) return new Blob([]).stream();
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
    this.storage.client
      .send(new GetObjectCommand({ Bucket: this.storage.bucket, Key: this.key, Range: `bytes=${this.start}-${this.end - 1}` }))
      .then((res) => (res.Body!.transformToWebStream() as ReadableStream<Uint8Array>).pipeTo(writable))
      .catch((err: unknown) => writable.abort(err).catch(() => undefined));
    return readable as ReturnType<Blob['stream']>;
  }

  override async arrayBuffer(): Promise<ArrayBuffer> {
    const chunks: Uint8Array[] = [];
    for await (const chunk of this.stream() as AsyncIterable<Uint8Array>) chunks.push(chunk);
    const all = Buffer.concat(chunks);
    return all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
  }

  override async text(): Promise<string> {
    return new TextDecoder().decode(await this.arrayBuffer());
  }
}
