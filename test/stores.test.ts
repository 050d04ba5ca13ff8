// S3 stores that do not enforce conditional writes would let two GPU jobs claim the same work:
// the worker probes the store at start and refuses to run on one, naming what it lacks. The
// stores are versitygw behind a small proxy that behaves like Google Cloud Storage's XML API
// (If-None-Match ignored: the second write "succeeds") or like Backblaze B2 (NotImplemented).
import { execFile } from 'node:child_process';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyObject, makeStorage, probeConditionalWrites, putBytes, sha256OfObject, SourceChanged } from '../lib/s3.js';
import { repoRoot } from '../lib/toolchain.js';
import { startS3, tempDir, testConfig } from '../testkit/services.js';

let tmp: ReturnType<typeof tempDir>;
let s3: Awaited<ReturnType<typeof startS3>>;
const proxies: Server[] = [];

beforeAll(async () => {
  tmp = tempDir('stores');
  s3 = await startS3(tmp.dir);
});
afterAll(async () => {
  for (const p of proxies) p.close();
  await s3?.stop();
  tmp?.remove();
});

/** A proxy to versitygw that answers conditional PUTs the way a store without them does. */
async function storeLike(kind: 'gcs' | 'b2'): Promise<string> {
  const target = new URL(s3.endpoint);
  const server = createServer((req, res) => {
    const conditional = req.method === 'PUT' && req.headers['if-none-match'] === '*';
    if (conditional && kind === 'b2') {
      req.resume();
      res.writeHead(501, { 'content-type': 'application/xml' }).end('<Error><Code>NotImplemented</Code><Message>A header you provided implies functionality that is not implemented</Message></Error>');
      return;
    }
    const upstream = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      if (conditional && answer.statusCode === 412) {
        // Google Cloud Storage's XML API ignores If-None-Match on writes: the overwrite "succeeds".
        answer.resume();
        res.writeHead(200, { etag: '"overwritten"', 'content-length': '0' }).end();
        return;
      }
      res.writeHead(answer.statusCode!, answer.headers);
      answer.pipe(res);
    });
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  proxies.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('S3 stores', () => {
  it('passes the conditional-write probe on a store that enforces If-None-Match (versitygw)', async () => {
    await expect(probeConditionalWrites(s3.storage)).resolves.toBeUndefined();
  });

  it('refuses a store that ignores If-None-Match (like GCS) and one that does not implement it (like B2), naming the missing feature', async () => {
    const gcs = makeStorage({ ...testConfig, LORAFLOW_S3_ENDPOINT: await storeLike('gcs') });
    await expect(probeConditionalWrites(gcs)).rejects.toThrow(/does not enforce conditional writes: a second PUT with If-None-Match: \* overwrote the object/);
    const b2 = makeStorage({ ...testConfig, LORAFLOW_S3_ENDPOINT: await storeLike('b2') });
    await expect(probeConditionalWrites(b2)).rejects.toThrow(/refused a conditional write \(If-None-Match: \*\): NotImplemented/);
  });

  it('the worker refuses to start on such a store, with the reason and no stack trace', async () => {
    const endpoint = await storeLike('gcs');
    const res = await promisify(execFile)(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'worker.ts')], {
      cwd: repoRoot,
      env: { ...process.env, LORAFLOW_S3_ENDPOINT: endpoint, TEMPORAL_ADDRESS: '127.0.0.1:1', LORAFLOW_JANITOR_MINUTES: '0' },
      timeout: 60_000,
    }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err,
    );
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^loraflow worker: the S3 store .* does not enforce conditional writes/m);
    expect(res.stderr).not.toMatch(/\n\s+at /);
  });

  it('copies only the bytes verified: a staged file overwritten since its ETag was read is refused', async () => {
    await putBytes(s3.storage, 'stage/a', 'verified bytes', 'application/octet-stream');
    const verified = (await sha256OfObject(s3.storage, 'stage/a'))!;
    await putBytes(s3.storage, 'stage/a', 'a late writer', 'application/octet-stream');
    await expect(copyObject(s3.storage, 'stage/a', 'published/a', { ifMatch: verified.etag })).rejects.toBeInstanceOf(SourceChanged);
    const now = (await sha256OfObject(s3.storage, 'stage/a'))!;
    await copyObject(s3.storage, 'stage/a', 'published/a', { ifMatch: now.etag });
    expect((await sha256OfObject(s3.storage, 'published/a'))!.sha256).toBe(now.sha256);
  });
});
