// Dataset sources as untrusted input, on the real S3 server (versitygw) and real local HTTP
// servers: a URL is fetched from the address that was checked (a rebinding resolver gets nowhere),
// slowly but with heartbeats, within timeouts; s3:// prefixes end at a "/" and only allowed buckets
// outside loraflow's own prefixes are read; local paths stay under the dataset roots; zips are
// judged by their central directory (a bomb by ratio) and macOS junk is ignored; a failed dataset
// leaves nothing in S3.
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createServer as createTcpServer } from 'node:net';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { type ActivityDeps, activityDepsFrom } from '../activities/deps.js';
import { ingestDataset } from '../activities/ingest.js';
import type { IngestResult } from '../contract/pipeline.js';
import { listKeys, putBytes } from '../lib/s3.js';
import { startS3, tempDir, testConfig } from '../testkit/services.js';

let tmp: ReturnType<typeof tempDir>;
let s3: Awaited<ReturnType<typeof startS3>>;
let deps: ActivityDeps;
const fingerprint = 'd'.repeat(64);

beforeAll(async () => {
  tmp = tempDir('sources');
  s3 = await startS3(tmp.dir);
  deps = activityDepsFrom(testConfig, { storage: s3.storage });
});
afterAll(async () => {
  await s3?.stop();
  tmp?.remove();
});

function ingest(source: string, over: Partial<ActivityDeps> = {}, env = new MockActivityEnvironment()): Promise<IngestResult> {
  return env.run(ingestDataset, { ...deps, ...over }, { dataset: { path: source, fingerprint } }) as Promise<IngestResult>;
}

async function failure(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

const png = (r: number, size = 12) => sharp({ create: { width: size, height: size, channels: 3, background: { r, g: 90, b: 160 } } }).png().toBuffer();

function zipBytes(entries: [string, Buffer][]): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  for (const [name, data] of entries) zip.addBuffer(data, name);
  zip.end();
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    zip.outputStream.on('data', (c: Buffer) => chunks.push(c)).on('error', reject).on('end', () => resolve(Buffer.concat(chunks)));
  });
}

describe('dataset URLs', () => {
  it('connects to the address it checked: a resolver that rebinds to loopback afterwards is never followed', async () => {
    // The internal service the attacker's name is rebound to: it counts every connection it gets.
    let connections = 0;
    const internal = createTcpServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((r) => internal.listen(0, '127.0.0.1', r));
    const port = (internal.address() as AddressInfo).port;
    // The attacker's DNS: a public address when the guard asks; the system's resolver (which answers
    // 127.0.0.1 for localhost) is what a second resolution would get.
    const asked: string[] = [];
    const resolve = async (host: string) => (asked.push(host), [{ address: '93.184.216.34', family: 4 as const }]);
    try {
      const err = await failure(ingest(`https://localhost:${port}/data.zip`, { datasets: { ...deps.datasets, resolve, connectTimeoutMs: 1000 } }));
      expect(err.message).toMatch(/localhost:\d+\/data\.zip/);
      expect(asked).toEqual(['localhost']);
      expect(connections).toBe(0);
    } finally {
      internal.close();
    }
  });

  it('heartbeats while a slow download streams, and fails a stalled one after the read timeout', async () => {
    const zip = await zipBytes([['a.png', await png(10, 64)], ['b.png', await png(200, 64)]]);
    const server = createHttpServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/zip' });
      if (req.url === '/stall.zip') return void res.write(zip.subarray(0, 100)); // then nothing
      const parts = 8;
      let i = 0;
      const next = () => {
        const part = zip.subarray(Math.floor((i * zip.length) / parts), Math.floor(((i + 1) * zip.length) / parts));
        if (++i === parts) return void res.end(part);
        res.write(part);
        setTimeout(next, 250);
      };
      next();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const env = new MockActivityEnvironment();
      const beats: unknown[] = [];
      env.on('heartbeat', (d: unknown) => beats.push(d));
      const result = await ingest(`${base}/slow.zip`, { allowPrivateUrls: true }, env);
      expect(result.imageCount).toBe(2);
      const downloading = beats.filter((b) => (b as { phase?: string }).phase === 'download');
      expect(downloading.length).toBeGreaterThanOrEqual(4);

      const stalled = await failure(ingest(`${base}/stall.zip`, { allowPrivateUrls: true, datasets: { ...deps.datasets, readTimeoutMs: 500 } }));
      expect(stalled.type).toBe('DatasetUnavailable');
      expect(stalled.nonRetryable).toBeFalsy();
      expect(stalled.message).toMatch(/stall\.zip: no answer for 500 ms/);

      const capped = await failure(ingest(`${base}/slow.zip`, { allowPrivateUrls: true, datasets: { ...deps.datasets, maxBytes: 100 } }));
      expect(capped.message).toMatch(/slow\.zip: .*(more|larger) than .*100 bytes/);
    } finally {
      server.close();
    }
  });

  it('refuses plain http off loopback and addresses hidden in IPv6 forms', async () => {
    const http = await failure(ingest('http://93.184.216.34/data.zip'));
    expect(http.message).toMatch(/plain http:\/\/ is refused/);
    for (const host of ['[64:ff9b::7f00:1]', '[::ffff:7f00:1]', '[2002:a9fe:a9fe::1]']) {
      const err = await failure(ingest(`https://${host}/data.zip`));
      expect(err.type, host).toBe('InvalidDataset');
      expect(err.message, host).toMatch(/internal address/);
    }
  });
});

describe('s3:// datasets', () => {
  it('ends a prefix at "/", reads only allowed buckets, and never loraflow\'s own prefixes', async () => {
    for (const [key, r] of [['photos/a.png', 1], ['photos/b.png', 2], ['photos-old/c.png', 3]] as const) await putBytes(s3.storage, key, await png(r), 'image/png');
    const result = await ingest(`s3://${s3.storage.bucket}/photos`);
    expect(result.imageCount).toBe(2); // photos-old/c.png is not part of photos/

    await putBytes(s3.storage, 'images/sha256/x.png', await png(4), 'image/png');
    for (const source of [`s3://${s3.storage.bucket}/images`, `s3://${s3.storage.bucket}/checkpoints/`, `s3://${s3.storage.bucket}/`]) {
      const err = await failure(ingest(source));
      expect(err.message, source).toMatch(/loraflow's own files/);
    }
    const other = await failure(ingest('s3://someone-elses-bucket/photos/'));
    expect(other.message).toMatch(/bucket someone-elses-bucket is not a dataset bucket \(LORAFLOW_DATASET_BUCKETS\)/);
  });
});

describe('local datasets', () => {
  it('reads only under the dataset roots, symlinks resolved', async () => {
    const root = path.join(tmp.dir, 'root');
    const outside = path.join(tmp.dir, 'outside');
    mkdirSync(root);
    mkdirSync(outside);
    writeFileSync(path.join(outside, 'a.png'), await png(5));
    writeFileSync(path.join(root, 'b.png'), await png(6));
    symlinkSync(outside, path.join(root, 'link'));
    const confined = { datasets: { ...deps.datasets, roots: [root] } };
    expect((await ingest(root, confined)).imageCount).toBe(1);
    for (const source of [outside, path.join(root, 'link'), path.join(root, '..', 'outside'), 'relative/dir']) {
      const err = await failure(ingest(source, confined));
      expect(err.message, source).toMatch(/is not under a dataset root: local datasets are read only from LORAFLOW_DATASET_ROOTS/);
    }
    const none = await failure(ingest(root, { datasets: { ...deps.datasets, roots: [] } }));
    expect(none.message).toMatch(/not under a dataset root/);
  });
});

describe('zips and real-world files', () => {
  it('refuses a zip bomb by its compression ratio before inflating it', async () => {
    // 10 MiB of zeros: under the per-entry cap, but ~1000:1.
    const file = path.join(tmp.dir, 'ratio.zip');
    writeFileSync(file, await zipBytes([['ok.png', await png(7)], ['bomb.png', Buffer.alloc(10 * 2 ** 20)]]));
    const err = await failure(ingest(file));
    expect(err.type).toBe('InvalidDataset');
    expect(err.message).toMatch(/bomb\.png has a compression ratio of \d+:1 \(at most 100:1\)/);
  });

  it('trains on a macOS zip: OS junk ignored, GIF/TIFF/AVIF decoded, every other skipped file named with its reason', async () => {
    const appleDouble = Buffer.concat([Buffer.from([0, 5, 22, 7, 0, 2, 0, 0]), Buffer.from('Mac OS X        ')]);
    const file = path.join(tmp.dir, 'macos.zip');
    writeFileSync(
      file,
      await zipBytes([
        ['photos/a.jpg', await sharp(await png(8)).jpeg().toBuffer()],
        ['photos/b.gif', await sharp(await png(9)).gif().toBuffer()],
        ['photos/c.tiff', await sharp(await png(10)).tiff().toBuffer()],
        ['photos/d.avif', await sharp(await png(11, 16)).avif().toBuffer()],
        ['photos/e.heic', Buffer.from('not really heic')],
        ['photos/notes.pdf', Buffer.from('%PDF-1.4')],
        ['__MACOSX/photos/._a.jpg', appleDouble],
        ['photos/._b.gif', appleDouble],
        ['photos/.DS_Store', Buffer.from('junk')],
        ['Thumbs.db', Buffer.from('junk')],
      ]),
    );
    const result = await ingest(file);
    expect(result.imageCount).toBe(4);
    expect(result.skippedCount).toBe(2);
    expect(result.skipped).toEqual([
      { name: 'photos/e.heic', reason: expect.stringMatching(/HEIC is not supported by this build of sharp/) },
      { name: 'photos/notes.pdf', reason: expect.stringMatching(/^not an image/) },
    ]);
  });

  it('writes nothing to S3 when a dataset fails, and counts images before decoding any', async () => {
    const dir = path.join(tmp.dir, 'half-bad');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'good.png'), await png(123, 20));
    writeFileSync(path.join(dir, 'bad.png'), 'not a png');
    const before = await listKeys(s3.storage, '');
    const err = await failure(ingest(dir));
    expect(err.message).toMatch(/1 file\(s\) .* bad\.png/);
    expect(await listKeys(s3.storage, '')).toEqual(before);

    const many = path.join(tmp.dir, 'many.zip');
    writeFileSync(many, await zipBytes(Array.from({ length: 5001 }, (_, i): [string, Buffer] => [`${i}.png`, Buffer.from('x')])));
    const tooMany = await failure(ingest(many));
    expect(tooMany.message).toMatch(/has 5001 images; at most 5000/); // not 5001 "not decodable" files
    expect(readFileSync(many).length).toBeGreaterThan(0);
  });
});
