// Item 4: ingest throughput on N generated photo-sized JPEGs (8 MP, quality 90, ~3.2 MB like a
// phone's photo) against raw S3 PUT throughput of the same bytes to the same S3 server; bytes
// stored per input byte; and validation time (ingest's own judgeImage, no S3) against a plain full
// decode and the PNG re-encode ingest used to do, all measured in this run.
// The ingest activity runs as is (MockActivityEnvironment), against versitygw.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import sharp from 'sharp';
import { type ActivityDeps, activityDepsFrom } from '../activities/deps.js';
import { ingestDataset } from '../activities/ingest.js';
import { judgeImage } from '../activities/ingest-image.js';
import type { DatasetManifest } from '../contract/pipeline.js';
import { exists, getJson, putBytes, type Storage } from '../lib/s3.js';
import { startS3, tempDir, testConfig } from '../testkit/services.js';
import { pool, round } from './lib.js';

/** 8 megapixels (3264 × 2448), a phone camera's size. */
const WIDTH = Number(process.env.BENCH_INGEST_WIDTH ?? 3264);
const HEIGHT = Number(process.env.BENCH_INGEST_HEIGHT ?? 2448);
/** Noise amplitude: 32 gives ~3.2 MB (0.4 bytes per pixel) at quality 90, what an 8 MP phone photo weighs. */
const NOISE = 32;
/** How many images the slow baselines (full decode, PNG re-encode) are timed on. */
const BASELINE_SAMPLE = 10;

/** A photo-like JPEG: gradients plus noise (one shared field, read at a per-image offset), distinct per index. */
function photoMaker() {
  const noise = randomBytes(WIDTH * HEIGHT * 3);
  return (i: number): Promise<Buffer> => {
    const raw = Buffer.alloc(WIDTH * HEIGHT * 3);
    const offset = (i * 7919 * 3) % noise.length;
    const shift = (i * 37) % 256;
    for (let y = 0; y < HEIGHT; y++) {
      const gy = (y * 255) / HEIGHT;
      for (let x = 0; x < WIDTH; x++) {
        const p = (y * WIDTH + x) * 3;
        const q = (p + offset) % noise.length;
        raw[p] = ((x * 255) / WIDTH + shift + (noise[q]! % NOISE)) & 255;
        raw[p + 1] = (gy + (noise[q + 1]! % NOISE)) & 255;
        raw[p + 2] = (((x + y) * 128) / WIDTH + (noise[q + 2]! % NOISE)) & 255;
      }
    }
    raw.writeUInt32BE(i); // every image differs
    return sharp(raw, { raw: { width: WIDTH, height: HEIGHT, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
  };
}

async function putAll(storage: Storage, files: string[], prefix: string, concurrency: number) {
  const started = Date.now();
  await pool(files, concurrency, async (f, i) => putBytes(storage, `${prefix}/${i}.jpg`, readFileSync(f), 'image/jpeg'));
  return (Date.now() - started) / 1000;
}

async function timed(fn: () => Promise<unknown>) {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}

export async function benchIngest(o: { images: number; log: (m: string) => void }) {
  const tmp = tempDir('bench-ingest');
  const s3 = await startS3(tmp.dir);
  try {
    const dir = path.join(tmp.dir, 'dataset');
    mkdirSync(dir, { recursive: true });
    const genStart = Date.now();
    const photo = photoMaker();
    const files = await pool(Array.from({ length: o.images }, (_, i) => i), 2, async (i) => {
      const file = path.join(dir, `photo-${String(i).padStart(5, '0')}.jpg`);
      writeFileSync(file, await photo(i));
      return file;
    });
    const inputBytes = files.reduce((a, f) => a + statSync(f).size, 0);
    const mb = inputBytes / 1e6;
    o.log(`ingest: generated ${o.images} ${WIDTH}x${HEIGHT} JPEGs, ${mb.toFixed(0)} MB, in ${((Date.now() - genStart) / 1000).toFixed(0)} s`);

    // Baselines: the same bytes PUT raw, one at a time and 8 at a time.
    const rawSequential = await putAll(s3.storage, files, 'raw-seq', 1);
    const rawParallel = await putAll(s3.storage, files, 'raw-par', 8);
    o.log(`ingest: raw PUT ${rawSequential.toFixed(1)} s sequential, ${rawParallel.toFixed(1)} s with 8 in flight`);

    // The ingest activity itself.
    const deps: ActivityDeps = activityDepsFrom(testConfig, { storage: s3.storage });
    const ingestStart = Date.now();
    const result = (await new MockActivityEnvironment().run(ingestDataset, deps, { dataset: { path: dir, fingerprint: 'c'.repeat(64) } })) as Awaited<ReturnType<typeof ingestDataset>>;
    const ingestSeconds = (Date.now() - ingestStart) / 1000;
    o.log(`ingest: ${result.imageCount} images in ${ingestSeconds.toFixed(1)} s`);
    const manifest = await getJson<DatasetManifest>(s3.storage, result.manifestKey);
    let storedBytes = 0;
    for (const image of manifest.images) storedBytes += (await exists(s3.storage, image.key))?.bytes ?? 0;
    const storedFormats = [...new Set(manifest.images.map((i) => path.extname(i.key)))];

    // Validation alone (no S3): ingest's judgeImage on every file, 8 in flight (as ingest reads
    // and judges); baselines on a sample: a full decode, and the PNG re-encode ingest used to do.
    const validationSeconds = await timed(() => pool(files, 8, async (f) => judgeImage(readFileSync(f))));
    const sample = files.slice(0, Math.min(files.length, BASELINE_SAMPLE));
    const inputs = sample.map((f) => readFileSync(f));
    const decodeSeconds = await timed(() => pool(inputs, 8, (b) => sharp(b, { failOn: 'error' }).raw().toBuffer()));
    const reencodeSeconds = await timed(() => pool(inputs, 8, (b) => sharp(b, { limitInputPixels: 40_000_000, failOn: 'error' }).rotate().png().toBuffer()));
    const perImage = (seconds: number, count: number) => (seconds * 1000) / count;

    const ingestMBps = mb / ingestSeconds;
    return {
      images: o.images,
      imageSize: `${WIDTH}x${HEIGHT} JPEG q90`,
      inputMB: round(mb, 1),
      ingestSeconds: round(ingestSeconds, 2),
      ingestMBps: round(ingestMBps, 2),
      ingestImagesPerSecond: round(o.images / ingestSeconds, 1),
      rawPutSequential: { seconds: round(rawSequential, 2), MBps: round(mb / rawSequential, 2) },
      rawPutParallel8: { seconds: round(rawParallel, 2), MBps: round(mb / rawParallel, 2) },
      ingestVsRawPutSequential: round(ingestMBps / (mb / rawSequential), 3),
      ingestVsRawPutParallel8: round(ingestMBps / (mb / rawParallel), 3),
      stored: { formats: storedFormats, bytes: storedBytes, bytesPerInputByte: round(storedBytes / inputBytes, 3) },
      validation: {
        images: o.images,
        seconds: round(validationSeconds, 2),
        msPerImage: round(perImage(validationSeconds, o.images), 1),
        /** Share of the ingest wall time spent judging (decode-validate, strip, hash). */
        shareOfIngest: round(validationSeconds / ingestSeconds, 3),
        baselineSampleImages: sample.length,
        fullDecodeMsPerImage: round(perImage(decodeSeconds, sample.length), 1),
        pngReencodeMsPerImage: round(perImage(reencodeSeconds, sample.length), 1),
        /** judgeImage time ÷ a plain full decode's, per image, same concurrency. */
        vsFullDecode: round(perImage(validationSeconds, o.images) / perImage(decodeSeconds, sample.length), 3),
      },
      target: { ingestVsRawPut: 0.5, storedBytesPerInputByte: 1.1, validationSecondsPer1000: 10 },
    };
  } finally {
    await s3.stop();
    tmp.remove();
  }
}
