// Item 4: ingest throughput of N generated ~1 MB JPEGs against raw S3 PUT throughput of the same
// bytes to the same S3 server, and how much of ingest is validation (decode + re-encode).
// The ingest activity runs as is (MockActivityEnvironment), against versitygw.
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import sharp from 'sharp';
import { ingestDataset } from '../activities/ingest.js';
import { type ActivityDeps, activityDepsFrom } from '../activities/deps.js';
import { putBytes, type Storage } from '../lib/s3.js';
import { startS3, tempDir, testConfig } from '../testkit/services.js';
import { mean, pool, round } from './lib.js';

const WIDTH = 1536;
const HEIGHT = 1024;

/** A photo-sized JPEG of about 1 MB: gradients plus noise, distinct per index. */
async function photo(i: number): Promise<Buffer> {
  const raw = Buffer.alloc(WIDTH * HEIGHT * 3);
  const noise = randomBytes(raw.length);
  const shift = (i * 37) % 256;
  for (let y = 0; y < HEIGHT; y++) {
    for (let x = 0; x < WIDTH; x++) {
      const p = (y * WIDTH + x) * 3;
      raw[p] = ((x * 255) / WIDTH + shift + (noise[p]! % 96)) & 255;
      raw[p + 1] = ((y * 255) / HEIGHT + (noise[p + 1]! % 96)) & 255;
      raw[p + 2] = (((x + y) * 128) / WIDTH + (noise[p + 2]! % 96)) & 255;
    }
  }
  return sharp(raw, { raw: { width: WIDTH, height: HEIGHT, channels: 3 } }).jpeg({ quality: 88 }).toBuffer();
}

async function putAll(storage: Storage, files: string[], prefix: string, concurrency: number) {
  const started = Date.now();
  await pool(files, concurrency, async (f, i) => putBytes(storage, `${prefix}/${i}.jpg`, readFileSync(f), 'image/jpeg'));
  return (Date.now() - started) / 1000;
}

export async function benchIngest(o: { images: number; log: (m: string) => void }) {
  const tmp = tempDir('bench-ingest');
  const s3 = await startS3(tmp.dir);
  try {
    const dir = path.join(tmp.dir, 'dataset');
    mkdirSync(dir, { recursive: true });
    const genStart = Date.now();
    const files = await pool(Array.from({ length: o.images }, (_, i) => i), 2, async (i) => {
      const file = path.join(dir, `photo-${String(i).padStart(5, '0')}.jpg`);
      writeFileSync(file, await photo(i));
      return file;
    });
    const inputBytes = files.reduce((a, f) => a + statSync(f).size, 0);
    const mb = inputBytes / 1e6;
    o.log(`ingest: generated ${o.images} JPEGs, ${mb.toFixed(0)} MB, in ${((Date.now() - genStart) / 1000).toFixed(0)} s`);

    // Baselines: the same bytes PUT raw, one at a time (ingest's own shape) and 8 at a time.
    const rawSequential = await putAll(s3.storage, files, 'raw-seq', 1);
    const rawParallel = await putAll(s3.storage, files, 'raw-par', 8);
    o.log(`ingest: raw PUT ${rawSequential.toFixed(1)} s sequential, ${rawParallel.toFixed(1)} s with 8 in flight`);

    // The ingest activity itself.
    const deps: ActivityDeps = activityDepsFrom(testConfig, { storage: s3.storage });
    const ingestStart = Date.now();
    const result = (await new MockActivityEnvironment().run(ingestDataset, deps, { dataset: { path: dir, fingerprint: 'c'.repeat(64) } })) as Awaited<ReturnType<typeof ingestDataset>>;
    const ingestSeconds = (Date.now() - ingestStart) / 1000;
    o.log(`ingest: ${result.imageCount} images in ${ingestSeconds.toFixed(1)} s`);

    // Validation alone, on the same files, no S3: decode only; and what ingest does (decode,
    // rotate, re-encode as PNG).
    const sample = files.slice(0, Math.min(files.length, 100));
    const decodeMs: number[] = [];
    const reencodeMs: number[] = [];
    let pngBytes = 0;
    for (const f of sample) {
      const input = readFileSync(f);
      let t = performance.now();
      await sharp(input, { failOn: 'error' }).raw().toBuffer();
      decodeMs.push(performance.now() - t);
      t = performance.now();
      const png = await sharp(input, { limitInputPixels: 40_000_000, failOn: 'error' }).rotate().png().toBuffer();
      reencodeMs.push(performance.now() - t);
      pngBytes += png.length;
    }
    const storedBytesPerInputByte = pngBytes / sample.reduce((a, f) => a + statSync(f).size, 0);

    const ingestMBps = mb / ingestSeconds;
    return {
      images: o.images,
      imageSize: `${WIDTH}x${HEIGHT} JPEG`,
      inputMB: round(mb, 1),
      ingestSeconds: round(ingestSeconds, 2),
      ingestMBps: round(ingestMBps, 2),
      ingestImagesPerSecond: round(o.images / ingestSeconds, 1),
      rawPutSequential: { seconds: round(rawSequential, 2), MBps: round(mb / rawSequential, 2) },
      rawPutParallel8: { seconds: round(rawParallel, 2), MBps: round(mb / rawParallel, 2) },
      ingestVsRawPutSequential: round(ingestMBps / (mb / rawSequential), 3),
      ingestVsRawPutParallel8: round(ingestMBps / (mb / rawParallel), 3),
      validation: {
        sampleImages: sample.length,
        decodeMsPerImage: round(mean(decodeMs), 1),
        decodeAndPngReencodeMsPerImage: round(mean(reencodeMs), 1),
        /** Share of the ingest wall time spent decoding + re-encoding. */
        shareOfIngest: round((mean(reencodeMs) * o.images) / 1000 / ingestSeconds, 3),
        /** Ingest stores PNGs: bytes written to S3 per input byte. */
        storedBytesPerInputByte: round(storedBytesPerInputByte, 2),
      },
      target: { ingestVsRawPut: 0.5 },
    };
  } finally {
    await s3.stop();
    tmp.remove();
  }
}
