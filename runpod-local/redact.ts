// Scrubbing for anything runpod-local writes to its logs. Job inputs carry presigned S3 URLs and
// worker URLs carry a per-worker token, so every URL query string is replaced wholesale.

const URL_QUERY = /(\bhttps?:\/\/[^\s"'<>?]+)\?[^\s"'<>]*/g;
const AMZ_SIGNATURE = /(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s"'<>]+/gi;

/** Redacts URL query strings, stray `X-Amz-Signature=...` fragments and the given secrets. */
export function redact(text: string, secrets: readonly string[] = []): string {
  let out = text.replace(URL_QUERY, '$1?[redacted]').replace(AMZ_SIGNATURE, '$1[redacted]');
  for (const secret of secrets) {
    if (secret.length >= 4) out = out.split(secret).join('[redacted]');
  }
  return out;
}
