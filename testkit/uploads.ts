// A dataset uploaded the way an API client does it: POST /v1/uploads, then one presigned PUT per
// file straight to S3 (the token never in a presigned URL).
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'vitest';

/** Uploads the files of `dir` through `post` (an authorized POST to the API); returns the upload id. */
export async function uploadDir(post: (route: string, body: unknown) => Promise<Response>, dir: string, token: string): Promise<string> {
  const files = (await readdir(dir)).sort();
  const res = await post('/v1/uploads', { files: files.map((name) => ({ name })) });
  expect(res.status).toBe(201);
  const up = (await res.json()) as { uploadId: string; files: { name: string; url: string }[] };
  for (const f of up.files) {
    expect(f.url).not.toContain(token);
    const put = await fetch(f.url, { method: 'PUT', body: await readFile(path.join(dir, f.name)) });
    expect(put.status, f.name).toBe(200);
  }
  return up.uploadId;
}
