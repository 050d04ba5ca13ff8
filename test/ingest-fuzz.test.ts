// Property-based fuzzing of ingest on the real S3 server (versitygw): thousands of mutated images
// and zips (flipped bytes, truncations, insertions, hostile entry names, junk, bombs) never crash
// the activity: each run ends in a valid dataset (a manifest whose every image is stored with its
// sha256) or in a non-retryable InvalidDataset error that names the file, and a failed run leaves
// nothing in S3. LORAFLOW_FUZZ_RUNS sets the runs per property (default 1000).
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import fc from 'fast-check';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { type ActivityDeps, activityDepsFrom } from '../activities/deps.js';
import { ingestDataset } from '../activities/ingest.js';
import type { DatasetManifest, IngestResult } from '../contract/pipeline.js';
import { sha256 } from '../lib/hash.js';
import { deleteObject, getBytes, listKeys } from '../lib/s3.js';
import { startS3, tempDir, testConfig } from '../testkit/services.js';

const RUNS = Number(process.env.LORAFLOW_FUZZ_RUNS ?? 1000);

let tmp: ReturnType<typeof tempDir>;
let s3: Awaited<ReturnType<typeof startS3>>;
let deps: ActivityDeps;
let seeds: { name: string; bytes: Buffer }[];
let baseline: string[];
let case_ = 0;

beforeAll(async () => {
  tmp = tempDir('fuzz');
  s3 = await startS3(tmp.dir);
  deps = activityDepsFrom(testConfig, { storage: s3.storage });
  const image = sharp({ create: { width: 24, height: 16, channels: 3, background: { r: 200, g: 30, b: 90 } } });
  seeds = [
    { name: 'a.png', bytes: await image.clone().png().toBuffer() },
    { name: 'b.jpg', bytes: await image.clone().jpeg().toBuffer() },
    { name: 'c.webp', bytes: await image.clone().webp().toBuffer() },
    { name: 'd.gif', bytes: await image.clone().gif().toBuffer() },
    { name: 'e.tiff', bytes: await image.clone().tiff().toBuffer() },
  ];
  baseline = await listKeys(s3.storage, '');
}, 60_000);
afterAll(async () => {
  await s3?.stop();
  tmp?.remove();
});

/** A byte-level mutation of a buffer: flips, overwrites, a truncation, an insertion. */
const mutation = fc.record({
  edits: fc.array(fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }), { maxLength: 12 }),
  truncate: fc.option(fc.nat(), { nil: undefined }),
  insert: fc.option(fc.record({ at: fc.nat(), bytes: fc.uint8Array({ maxLength: 64 }) }), { nil: undefined }),
});
type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

function mutate(input: Buffer, m: Mutation): Buffer {
  let out = Buffer.from(input);
  for (const e of m.edits) if (out.length) out[e.at % out.length] = e.byte;
  if (m.insert) {
    const at = m.insert.at % (out.length + 1);
    out = Buffer.concat([out.subarray(0, at), Buffer.from(m.insert.bytes), out.subarray(at)]);
  }
  if (m.truncate !== undefined && out.length) out = out.subarray(0, m.truncate % out.length);
  return out;
}

const NAMES = ['img.png', 'x/y.jpg', '__MACOSX/._img.png', '._z.png', '.DS_Store', 'Thumbs.db', 'cap.txt', 'img.txt', 'notes.md', 'pic.heic', 'w.webp', 'deep/er/pic.gif', 'scan.tiff', 'q.avif'];
const entry = fc.record({
  name: fc.oneof(fc.constantFrom(...NAMES), fc.constantFrom('../evil.png', '/abs.png', 'dup.png')),
  seed: fc.nat(),
  mutation,
  zeros: fc.option(fc.integer({ min: 1, max: 3 * 2 ** 20 }), { nil: undefined, freq: 8 }),
});
type Entry = typeof entry extends fc.Arbitrary<infer T> ? T : never;
const contentOf = (e: Entry) => (e.zeros ? Buffer.alloc(e.zeros) : mutate(seeds[e.seed % seeds.length]!.bytes, e.mutation));

/** yazl refuses hostile names: they are written as same-length stand-ins, then patched in. */
const HOSTILE: Record<string, string> = { '../evil.png': 'zz/evil.png', '/abs.png': 'Xabs.png' };

function zipOf(entries: Entry[]): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  for (const e of entries) zip.addBuffer(contentOf(e), HOSTILE[e.name] ?? e.name, { compress: true });
  zip.end();
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    zip.outputStream.on('data', (c: Buffer) => chunks.push(c)).on('error', reject).on('end', () => {
      let latin = Buffer.concat(chunks).toString('latin1');
      for (const [hostile, standIn] of Object.entries(HOSTILE)) latin = latin.replaceAll(standIn, hostile);
      resolve(Buffer.from(latin, 'latin1'));
    });
  });
}

/** Runs ingest on `source`; checks the outcome is a valid dataset or an error naming one of `names`, and cleans up. */
async function judge(source: string, names: string[]): Promise<void> {
  const outcome = await (new MockActivityEnvironment().run(ingestDataset, deps, { dataset: { path: source, fingerprint: 'f'.repeat(64) } }) as Promise<IngestResult>).then(
    (result) => ({ result }),
    (error: unknown) => ({ error }),
  );
  const written = (await listKeys(s3.storage, '')).filter((k) => !baseline.includes(k));
  if ('error' in outcome) {
    const err = outcome.error;
    expect(err, String(err)).toBeInstanceOf(ApplicationFailure);
    expect((err as ApplicationFailure).type, (err as Error).message).toBe('InvalidDataset');
    expect((err as ApplicationFailure).nonRetryable).toBe(true);
    const message = (err as Error).message;
    expect([source, ...names].some((n) => message.includes(n)), message).toBe(true);
    expect(written, `a failed ingest left ${written.join(', ')}`).toEqual([]);
    return;
  }
  const { result } = outcome;
  const manifest = JSON.parse((await getBytes(s3.storage, result.manifestKey)).toString()) as DatasetManifest;
  expect(sha256(Buffer.from(JSON.stringify(manifest)))).toBe(result.manifestSha256);
  expect(manifest.images.length).toBe(result.imageCount);
  expect(result.imageCount).toBeGreaterThan(0);
  for (const image of manifest.images) expect(sha256(await getBytes(s3.storage, image.key))).toBe(image.id);
  expect(written.sort()).toEqual([result.manifestKey, ...manifest.images.map((i) => i.key)].sort());
  // Back to the baseline, so that every run judges its own writes.
  for (const key of written) await deleteObject(s3.storage, key);
}

describe('ingest under fuzzing', () => {
  it(`ends every mutated image dataset in a valid dataset or an error naming the file (${RUNS} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.record({ seed: fc.nat(), mutation }), { minLength: 1, maxLength: 3 }), async (files) => {
        const dir = path.join(tmp.dir, `img-${case_++}`);
        mkdirSync(dir);
        const names = files.map((f, i) => `${i}-${seeds[f.seed % seeds.length]!.name}`);
        files.forEach((f, i) => writeFileSync(path.join(dir, names[i]!), mutate(seeds[f.seed % seeds.length]!.bytes, f.mutation)));
        await judge(dir, names);
      }),
      { numRuns: RUNS },
    );
  });

  it(`ends every mutated zip in a valid dataset or an error naming the zip or entry (${RUNS} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(entry, { minLength: 1, maxLength: 5 }), fc.option(mutation, { nil: undefined, freq: 2 }), async (entries, zipMutation) => {
        const file = path.join(tmp.dir, `zip-${case_++}.zip`);
        const bytes = await zipOf(entries);
        writeFileSync(file, zipMutation ? mutate(bytes, zipMutation) : bytes);
        await judge(file, entries.map((e) => e.name));
      }),
      { numRuns: RUNS },
    );
  });
});
