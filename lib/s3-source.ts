// An s3:// dataset source as bucket and prefix. A prefix names a folder: `s3://b/photos` is
// `photos/`, so `photos-old/…` is never part of it (S3 prefixes are plain string prefixes).
export interface S3Source {
  bucket: string;
  /** Empty (the whole bucket) or ending in "/". */
  prefix: string;
}

/** Bucket names as S3 allows them (3–63 lowercase letters, digits, "." and "-"). */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function parseS3Source(uri: string): S3Source {
  const match = /^s3:\/\/([^/]*)\/?(.*)$/.exec(uri);
  if (!match || !BUCKET.test(match[1]!)) throw new Error(`not an s3://bucket/prefix/ dataset: ${uri}`);
  const raw = match[2]!.replace(/\/+$/, '');
  if (raw && raw.split('/').some((part) => part === '' || part === '.' || part === '..')) throw new Error(`${uri}: the prefix has an empty, "." or ".." part`);
  return { bucket: match[1]!, prefix: raw ? `${raw}/` : '' };
}
