// Activities against the real S3 server (versitygw), run in MockActivityEnvironment.
import { mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import sharp, { type Sharp } from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { type ActivityDeps, activityDepsFrom } from '../activities/deps.js';
import { ingestDataset } from '../activities/ingest.js';
import { publishLora } from '../activities/publish.js';
import { type DatasetManifest, type IngestResult, TrainRequest } from '../contract/pipeline.js';
import { sha256 } from '../lib/hash.js';
import { getBytes, getJson, listKeys, putBytes } from '../lib/s3.js';
import { makeDataset } from '../testkit/datasets.js';
import { decodes } from '../activities/ingest-image.js';
import { startS3, tempDir, testConfig } from '../testkit/services.js';

let tmp: ReturnType<typeof tempDir>;
let s3: Awaited<ReturnType<typeof startS3>>;
let deps: ActivityDeps;
const fingerprint = 'f'.repeat(64);

beforeAll(async () => {
  tmp = tempDir('act');
  s3 = await startS3(tmp.dir);
  // No RunPod endpoint: these activities never call one.
  deps = activityDepsFrom(testConfig, { storage: s3.storage });
});
afterAll(async () => {
  await s3?.stop();
  tmp?.remove();
});

const run = <A extends unknown[], R>(fn: (deps: ActivityDeps, ...args: A) => Promise<R>, ...args: A): Promise<R> =>
  new MockActivityEnvironment().run((...a: A) => fn(deps, ...a), ...args) as Promise<R>;

async function expectFailure(p: Promise<unknown>, type: string, message: RegExp) {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ApplicationFailure);
  expect((err as ApplicationFailure).type).toBe(type);
  expect((err as ApplicationFailure).message).toMatch(message);
}

function zipOf(file: string, entries: Record<string, Buffer>): Promise<string> {
  const zip = new yazl.ZipFile();
  for (const [name, data] of Object.entries(entries)) zip.addBuffer(data, name);
  zip.end();
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    zip.outputStream.on('data', (c: Buffer) => chunks.push(c)).on('error', reject).on('end', () => {
      writeFileSync(file, Buffer.concat(chunks));
      resolve(file);
    });
  });
}

/** A photo-like image: noise on a gradient (what a camera's JPEG encoder sees). */
function noisy(width: number, height: number) {
  const raw = Buffer.alloc(width * height * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = ((i % (width * 3)) / 3 + ((i * 2654435761) >>> 26)) & 255;
  return sharp(raw, { raw: { width, height, channels: 3 } });
}

/** A PNG with a tEXt chunk after IHDR. */
function withPngText(png: Buffer, key: string, text: string) {
  const data = Buffer.from(`${key}\0${text}`, 'latin1');
  const chunk = Buffer.alloc(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  chunk.write('tEXt', 4, 'latin1');
  data.copy(chunk, 8);
  chunk.writeUInt32BE(crc32(chunk.subarray(4, 8 + data.length)), 8 + data.length);
  return Buffer.concat([png.subarray(0, 33), chunk, png.subarray(33)]);
}

describe('ingestDataset', () => {
  it('stores decoded, metadata-free, content-addressed images and a manifest with sidecar captions', async () => {
    const dir = await makeDataset(path.join(tmp.dir, 'ds1'), { images: 3, captioned: 1 });
    // A duplicate of img-0 under another name, carrying EXIF metadata that must not survive.
    const withExif = await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 10, g: 200, b: 30 } } })
      .withMetadata({ exif: { IFD0: { Copyright: 'secret-owner' } } })
      .jpeg()
      .toBuffer();
    expect((await sharp(withExif).metadata()).exif).toBeDefined();
    writeFileSync(path.join(dir, 'img-0-copy.png'), await sharp(path.join(dir, 'img-0.png')).png().toBuffer());
    writeFileSync(path.join(dir, 'photo.jpg'), withExif);
    writeFileSync(path.join(dir, 'notes.md'), 'ignored');

    const result = await run(ingestDataset, { dataset: { path: dir, fingerprint } });
    expect(result).toMatchObject({ imageCount: 4, sidecarCaptions: 1, duplicatesDropped: 1 });
    const manifestBytes = await getBytes(s3.storage, result.manifestKey);
    expect(sha256(manifestBytes)).toBe(result.manifestSha256);
    const manifest = JSON.parse(manifestBytes.toString()) as DatasetManifest;
    expect(manifest.images.find((i) => i.source === 'img-0.png')?.caption).toBe('a test square number 0');
    for (const image of manifest.images) {
      const stored = await getBytes(s3.storage, image.key);
      expect(sha256(stored)).toBe(image.id);
      const meta = await sharp(stored).metadata();
      // Kept in its own encoding: the JPEG stays a JPEG, the PNGs PNGs.
      expect(meta.format).toBe(image.source.endsWith('.jpg') ? 'jpeg' : 'png');
      expect(image.key).toBe(`images/sha256/${image.id}.${image.source.endsWith('.jpg') ? 'jpg' : 'png'}`);
      expect(meta.exif).toBeUndefined();
    }
    // Same files again: same manifest, nothing new written.
    const before = await listKeys(s3.storage, '');
    expect((await run(ingestDataset, { dataset: { path: dir, fingerprint } })).manifestKey).toBe(result.manifestKey);
    expect(await listKeys(s3.storage, '')).toEqual(before);
  });

  it('keeps photos in their own encoding: metadata gone, pixels byte-identical, bytes no larger', async () => {
    const dir = path.join(tmp.dir, 'ds-keep');
    mkdirSync(dir);
    const secret = 'secret-owner-51.5074N';
    const photo = noisy(320, 240);
    const tagged = (img: Sharp) =>
      img.withExif({ IFD0: { Copyright: secret, Artist: secret }, IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '51/1 30/1 0/1', GPSLongitudeRef: 'W', GPSLongitude: '0/1 7/1 0/1' } }).withXmp(`<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description>${secret}</rdf:Description></rdf:RDF></x:xmpmeta>`);
    const inputs: Record<string, Buffer> = {
      'photo.jpg': await tagged(photo.clone().jpeg({ quality: 90 })).toBuffer(),
      'photo.webp': await tagged(photo.clone().webp({ quality: 80 })).toBuffer(),
      'shot.png': withPngText(await photo.clone().png().toBuffer(), 'Author', secret),
      'p3.jpg': await photo.clone().jpeg().withIccProfile('p3').toBuffer(),
    };
    for (const [name, bytes] of Object.entries(inputs)) writeFileSync(path.join(dir, name), bytes);
    expect((await sharp(inputs['photo.jpg']).metadata()).exif?.includes(secret)).toBe(true); // the test's own premise
    expect(inputs['shot.png']!.includes(secret)).toBe(true);

    const manifest = await getJson<DatasetManifest>(s3.storage, (await run(ingestDataset, { dataset: { path: dir, fingerprint } })).manifestKey);
    expect(manifest.images.map((i) => [i.source, path.extname(i.key)]).sort()).toEqual([['p3.jpg', '.jpg'], ['photo.jpg', '.jpg'], ['photo.webp', '.webp'], ['shot.png', '.png']]);
    for (const image of manifest.images) {
      const input = inputs[image.source]!;
      const stored = await getBytes(s3.storage, image.key);
      expect(stored.includes(secret), image.source).toBe(false);
      expect(stored.includes('GPS') || stored.includes('Exif\0') || stored.includes('xmpmeta'), image.source).toBe(false);
      const meta = await sharp(stored).metadata();
      expect([meta.exif, meta.xmp], image.source).toEqual([undefined, undefined]);
      expect(meta.icc !== undefined, image.source).toBe(image.source === 'p3.jpg'); // colour kept, as sharp reads it
      expect((await sharp(stored).raw().toBuffer()).equals(await sharp(input).raw().toBuffer()), image.source).toBe(true);
      expect(stored.length, image.source).toBeLessThanOrEqual(input.length); // a plain photo: ≤ 1.1× holds with room to spare
      expect(image).toMatchObject({ width: 320, height: 240 });
    }
    const { ContentType } = await s3.storage.client.send(new HeadObjectCommand({ Bucket: s3.storage.bucket, Key: manifest.images.find((i) => i.source === 'photo.webp')!.key }));
    expect(ContentType).toBe('image/webp');
  });

  it('re-encodes what it cannot keep as is: EXIF orientation applied upright, CMYK JPEGs', async () => {
    const dir = path.join(tmp.dir, 'ds-reencode');
    mkdirSync(dir);
    const photo = noisy(64, 32);
    const rotated = await photo.clone().jpeg().withMetadata({ orientation: 6 }).toBuffer();
    writeFileSync(path.join(dir, 'rotated.jpg'), rotated);
    writeFileSync(path.join(dir, 'cmyk.jpg'), await photo.clone().toColourspace('cmyk').jpeg().toBuffer());
    const manifest = await getJson<DatasetManifest>(s3.storage, (await run(ingestDataset, { dataset: { path: dir, fingerprint } })).manifestKey);
    const upright = manifest.images.find((i) => i.source === 'rotated.jpg')!;
    expect(upright).toMatchObject({ width: 32, height: 64 });
    expect(upright.key).toMatch(/\.png$/);
    const stored = await getBytes(s3.storage, upright.key);
    const meta = await sharp(stored).metadata();
    expect([meta.format, meta.width, meta.height, meta.orientation, meta.exif]).toEqual(['png', 32, 64, undefined, undefined]);
    expect((await sharp(stored).raw().toBuffer()).equals(await sharp(rotated).rotate().raw().toBuffer())).toBe(true);
    expect(manifest.images.find((i) => i.source === 'cmyk.jpg')!.key).toMatch(/\.png$/);
  });

  it('refuses a truncated JPEG, naming it, and stores nothing', async () => {
    const dir = path.join(tmp.dir, 'ds-truncated');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'good.jpg'), await noisy(128, 96).jpeg().toBuffer());
    const whole = await noisy(256, 192).jpeg({ quality: 90 }).toBuffer();
    writeFileSync(path.join(dir, 'cut.jpg'), whole.subarray(0, Math.floor(whole.length * 0.8)));
    const before = await listKeys(s3.storage, '');
    await expectFailure(run(ingestDataset, { dataset: { path: dir, fingerprint } }), 'InvalidDataset', /1 file\(s\).*cut\.jpg \(.*(premature end|truncated)/i);
    expect(await listKeys(s3.storage, '')).toEqual(before);
  });

  it('validates by decoding the bytes to store: shrink-on-load still reads a JPEG to its end', async () => {
    const whole = await noisy(1024, 768).jpeg({ quality: 90 }).toBuffer();
    await expect(decodes(whole)).resolves.toBe(true);
    // Cut inside the entropy-coded data, with and without an EOI marker: the first is refused by
    // the decode itself, not only by the JPEG stripper (which wants an EOI).
    await expect(decodes(whole.subarray(0, Math.floor(whole.length * 0.95)))).resolves.toBe(false);
    expect((await sharp(whole).resize(32, 32, { fit: 'inside' }).raw().toBuffer({ resolveWithObject: true })).info.width).toBe(32);
  });

  it('rejects files that do not decode, naming each one', async () => {
    const dir = await makeDataset(path.join(tmp.dir, 'ds2'), { images: 2, captioned: 0 });
    writeFileSync(path.join(dir, 'fake.png'), 'this is not a png');
    const png = await sharp(path.join(dir, 'img-0.png')).png().toBuffer();
    writeFileSync(path.join(dir, 'truncated.png'), png.subarray(0, png.length / 2));
    await expectFailure(run(ingestDataset, { dataset: { path: dir, fingerprint } }), 'InvalidDataset', /2 file\(s\).*fake\.png.*truncated\.png/);
  });

  it('refuses decompression bombs before decoding them', async () => {
    const dir = path.join(tmp.dir, 'ds-bomb');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'huge.png'), await sharp({ create: { width: 10_000, height: 5_000, channels: 3, background: '#000' } }).png().toBuffer());
    await expectFailure(run(ingestDataset, { dataset: { path: dir, fingerprint } }), 'InvalidDataset', /huge\.png.*pixel limit/i);
  });

  it('reads a .zip, and rejects zip slip and missing or empty datasets', async () => {
    const dir = await makeDataset(path.join(tmp.dir, 'ds3'), { images: 2, captioned: 2 });
    const png = (i: number) => sharp(path.join(dir, `img-${i}.png`)).toBuffer();
    const good = await zipOf(path.join(tmp.dir, 'good.zip'), { 'a/img-0.png': await png(0), 'a/img-0.txt': Buffer.from('zipped caption'), 'img-1.png': await png(1) });
    const result = await run(ingestDataset, { dataset: { path: good, fingerprint } });
    expect(result).toMatchObject({ imageCount: 2, sidecarCaptions: 1 });
    expect((await getJson<DatasetManifest>(s3.storage, result.manifestKey)).images.map((i) => i.caption).filter(Boolean)).toEqual(['zipped caption']);

    const slip = await zipOf(path.join(tmp.dir, 'slip.zip'), { 'ok.png': await png(0) });
    // yazl refuses "..", so write the entry name by patching the bytes of a same-length name.
    const bytes = Buffer.from((await import('node:fs')).readFileSync(slip).toString('latin1').replaceAll('ok.png', '../x.p'), 'latin1');
    writeFileSync(slip, bytes);
    await expectFailure(run(ingestDataset, { dataset: { path: slip, fingerprint } }), 'InvalidDataset', /unsafe path|invalid relative path|\.\.\/x\.p/);

    await expectFailure(run(ingestDataset, { dataset: { path: path.join(tmp.dir, 'nope'), fingerprint } }), 'InvalidDataset', /not found/);
    mkdirSync(path.join(tmp.dir, 'empty'));
    symlinkSync('/etc/hostname', path.join(tmp.dir, 'empty', 'link.png'));
    await expectFailure(run(ingestDataset, { dataset: { path: path.join(tmp.dir, 'empty'), fingerprint } }), 'InvalidDataset', /no images/);
  });

  it('refuses symlinks, absolute paths, duplicate names and zip bombs in a .zip, naming the entry', async () => {
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#123456' } }).png().toBuffer();
    const build = (file: string, add: (zip: yazl.ZipFile) => void) =>
      new Promise<string>((resolve, reject) => {
        const zip = new yazl.ZipFile();
        add(zip);
        zip.end();
        const chunks: Buffer[] = [];
        zip.outputStream.on('data', (c: Buffer) => chunks.push(c)).on('error', reject).on('end', () => {
          writeFileSync(path.join(tmp.dir, file), Buffer.concat(chunks));
          resolve(path.join(tmp.dir, file));
        });
      });
    const ingest = (zipPath: string) => run(ingestDataset, { dataset: { path: zipPath, fingerprint } });

    const symlink = await build('symlink.zip', (z) => z.addBuffer(Buffer.from('/etc/passwd'), 'evil.png', { mode: 0o120777 }));
    await expectFailure(ingest(symlink), 'InvalidDataset', /symlink in zip: evil\.png/);

    const twice = await build('twice.zip', (z) => {
      z.addBuffer(png, 'a.png');
      z.addBuffer(png, 'a.png');
    });
    await expectFailure(ingest(twice), 'InvalidDataset', /a\.png appears twice/);

    // 80 MiB of zeros compresses to ~80 KiB: refused once it inflates past the per-entry cap.
    const bomb = await build('bomb.zip', (z) => z.addBuffer(Buffer.alloc(80 * 2 ** 20), 'bomb.png'));
    expect(statSync(bomb).size).toBeLessThan(2 ** 20);
    await expectFailure(ingest(bomb), 'InvalidDataset', /bomb\.png inflates past/);

    const absolute = await build('absolute.zip', (z) => z.addBuffer(png, 'abs/olute.png'));
    writeFileSync(absolute, Buffer.from(readFileSync(absolute).toString('latin1').replaceAll('abs/olute.png', '/bs/olute.png'), 'latin1'));
    await expectFailure(ingest(absolute), 'InvalidDataset', /absolute path|unsafe path|\/bs\/olute\.png/);
  });

  it('reads a .zip from a URL, refusing internal addresses unless allowed', async () => {
    const dir = await makeDataset(path.join(tmp.dir, 'ds-url'), { images: 2, captioned: 1 });
    const zip = readFileSync(await zipOf(path.join(tmp.dir, 'url.zip'), {
      'img-0.png': readFileSync(path.join(dir, 'img-0.png')),
      'img-0.txt': readFileSync(path.join(dir, 'img-0.txt')),
      'img-1.png': readFileSync(path.join(dir, 'img-1.png')),
    }));
    const server = createServer((req, res) => (req.url?.startsWith('/data.zip') ? res.end(zip) : res.writeHead(302, { location: '/data.zip' }).end()));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const url = `${base}/data.zip?X-Amz-Signature=secret`;
      const refused = run(ingestDataset, { dataset: { path: url, fingerprint } });
      await expectFailure(refused, 'InvalidDataset', /127\.0\.0\.1:\d+\/data\.zip: .*internal address \(127\.0\.0\.1\); set LORAFLOW_ALLOW_PRIVATE_URLS=true/);
      await refused.catch((err: Error) => expect(err.message).not.toContain('secret'));

      const allowed = new MockActivityEnvironment().run(ingestDataset, { ...deps, allowPrivateUrls: true }, { dataset: { path: url, fingerprint } }) as Promise<IngestResult>;
      expect(await allowed).toMatchObject({ imageCount: 2, sidecarCaptions: 1 });
      const redirected = new MockActivityEnvironment().run(ingestDataset, { ...deps, allowPrivateUrls: true }, { dataset: { path: `${base}/elsewhere`, fingerprint } }) as Promise<IngestResult>;
      await expectFailure(redirected, 'InvalidDataset', /redirects are not followed/);
    } finally {
      server.close();
    }
  });

  it('reads every object under an s3:// prefix', async () => {
    const dir = await makeDataset(path.join(tmp.dir, 'ds-s3'), { images: 2, captioned: 2 });
    for (const name of ['img-0.png', 'img-0.txt', 'img-1.png', 'img-1.txt']) await putBytes(s3.storage, `uploads/team-a/${name}`, readFileSync(path.join(dir, name)), 'application/octet-stream');
    const result = await run(ingestDataset, { dataset: { path: `s3://${s3.storage.bucket}/uploads/team-a/`, fingerprint } });
    expect(result).toMatchObject({ imageCount: 2, sidecarCaptions: 2 });
    await expectFailure(run(ingestDataset, { dataset: { path: `s3://${s3.storage.bucket}/uploads/nobody/`, fingerprint } }), 'InvalidDataset', /no objects under/);
  });

  it('validates its input at the activity boundary', async () => {
    await expectFailure(run(ingestDataset, { dataset: { path: '', fingerprint: 'nothex' } }), 'InvalidInput', /dataset\.(path|fingerprint)/);
  });
});

describe('publishLora', () => {
  const request = TrainRequest.parse({ name: 'pub', dataset: { path: '/d', fingerprint }, training: { triggerWord: 'lfpub', baseModel: 'tiny-sd', params: { steps: 1 } } });
  const input = (stagingKey: string, lora: { sha256: string; bytes: number }) => ({
    request,
    version: '20261125-000000-abcdef12',
    dataset: { manifestKey: 'm', manifestSha256: 'e'.repeat(64), imageCount: 1, sidecarCaptions: 1, duplicatesDropped: 0 },
    captions: { captionsKey: 'c', sidecar: 1, gpuCaptioned: 0 },
    trained: { gpuJobId: 'job-1', gpuJobIds: ['job-1'], stagingKey, lora, samples: [], metrics: { steps: 1, finalLoss: 0.1, lossCurve: [0.1], seconds: {}, device: 'cpu' } },
  });

  it('publishes a verified artifact with metadata, idempotently', async () => {
    const bytes = Buffer.from('lora-bytes');
    await putBytes(s3.storage, 'runs/r1/lora.safetensors', bytes, 'application/octet-stream');
    await putBytes(s3.storage, 'c', '{}', 'application/json'); // the captions, copied beside the LoRA
    const args = input('runs/r1/lora.safetensors', { sha256: sha256(bytes), bytes: bytes.length });
    const first = await run(publishLora, args);
    expect(first.uri).toBe(`s3://${s3.storage.bucket}/loras/pub/20261125-000000-abcdef12/lora.safetensors`);
    expect(await run(publishLora, args)).toEqual(first);
    expect(await listKeys(s3.storage, 'loras/pub/')).toEqual(['loras/pub/20261125-000000-abcdef12/captions.json', 'loras/pub/20261125-000000-abcdef12/lora.safetensors', 'loras/pub/20261125-000000-abcdef12/metadata.json', 'loras/pub/latest.json']);
    // latest.json names the newest version and its dataset, for scheduled retraining.
    expect(await getJson(s3.storage, 'loras/pub/latest.json')).toEqual({ name: 'pub', version: '20261125-000000-abcdef12', manifestSha256: 'e'.repeat(64), uri: first.uri, metadataUri: first.metadataUri });
    await run(publishLora, { ...args, version: '20251125-000000-00000000' }); // an older run finishing late
    expect(await getJson(s3.storage, 'loras/pub/latest.json')).toMatchObject({ version: '20261125-000000-abcdef12' });
    const metadata = await getJson<Record<string, unknown>>(s3.storage, 'loras/pub/20261125-000000-abcdef12/metadata.json');
    expect(metadata).toMatchObject({ name: 'pub', baseModel: 'tiny-sd', lora: { sha256: sha256(bytes) }, dataset: { manifestSha256: 'e'.repeat(64) } });
  });

  it('refuses a missing or mismatching artifact and publishes nothing', async () => {
    await expectFailure(run(publishLora, input('runs/none/lora.safetensors', { sha256: 'a'.repeat(64), bytes: 3 })), 'ArtifactNotVerified', /missing/);
    await putBytes(s3.storage, 'runs/r2/lora.safetensors', 'other', 'application/octet-stream');
    const wrong = { ...input('runs/r2/lora.safetensors', { sha256: 'a'.repeat(64), bytes: 5 }), version: 'v-bad' };
    await expectFailure(run(publishLora, wrong), 'ArtifactNotVerified', /not what the worker reported/);
    expect(await listKeys(s3.storage, 'loras/pub/v-bad')).toEqual([]);
  });

  it('refuses a sample whose bytes are not what the worker reported, and publishes no metadata', async () => {
    const bytes = Buffer.from('lora-bytes-3');
    await putBytes(s3.storage, 'runs/r3/lora.safetensors', bytes, 'application/octet-stream');
    await putBytes(s3.storage, 'runs/r3/samples/step-1.png', 'rendered by someone else', 'image/png');
    const base = input('runs/r3/lora.safetensors', { sha256: sha256(bytes), bytes: bytes.length });
    const args = { ...base, version: 'v-sample', trained: { ...base.trained, samples: [{ step: 1, key: 'runs/r3/samples/step-1.png', sha256: sha256(Buffer.from('the real sample')) }] } };
    await expectFailure(run(publishLora, args), 'ArtifactNotVerified', /sample of step 1 at s3:\/\/.*runs\/r3\/samples\/step-1\.png is sha256 [0-9a-f]{64}, the worker reported/);
    expect(await listKeys(s3.storage, 'loras/pub/v-sample')).toEqual([]);
    const missing = { ...args, trained: { ...args.trained, samples: [{ step: 2, key: 'runs/r3/samples/step-2.png', sha256: 'c'.repeat(64) }] } };
    await expectFailure(run(publishLora, missing), 'ArtifactNotVerified', /sample of step 2 .* is missing/);
  });
});
