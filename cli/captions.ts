// `loraflow captions pull|push` and `loraflow continue`: the caption review of a run started with
// --review-captions. Pull writes one `<image>.txt` per image (the sidecar convention), push reads
// them back and replaces the run's captions in one write, continue lets the run go on to train.
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { withTrigger } from '../activities/caption.js';
import type { Captions, DatasetManifest, PipelineProgress } from '../contract/pipeline.js';
import type { Config } from '../lib/config.js';
import { getJson, makeStorage, putBytes } from '../lib/s3.js';
import { continueUpdate } from '../workflows/definitions.js';
import { CliError } from './connect.js';
import { status } from './inspect.js';

/** The most a caption may hold (the GPU job's limit). */
const MAX_CAPTION = 1000;

async function underReview(client: Client, id: string): Promise<NonNullable<PipelineProgress['captionReview']>> {
  const s = await status(client, id);
  if (s.stage !== 'awaiting-captions' || !s.captionReview) {
    throw new CliError(`pipeline ${id} is not awaiting caption review (stage: ${s.stage}); only a run started with --review-captions waits for one`, 'conflict');
  }
  return s.captionReview;
}

/** `a/b.png` → `a/b.txt`; a name that would leave the directory is refused. */
function textFileOf(source: string): string {
  const file = `${source.replace(/\.[^./\\]+$/, '')}.txt`;
  if (path.isAbsolute(file) || file.split(/[\\/]/).includes('..')) throw new CliError(`image ${JSON.stringify(source)}: its name leaves the directory`);
  return file;
}

export async function pullCaptions(client: Client, config: Config, id: string, out: string): Promise<{ files: number; dir: string }> {
  const review = await underReview(client, id);
  const storage = makeStorage(config);
  const [manifest, captions] = await Promise.all([getJson<DatasetManifest>(storage, review.manifestKey), getJson<Captions>(storage, review.captionsKey)]);
  for (const image of manifest.images) {
    const file = path.join(out, textFileOf(image.source));
    await mkdir(path.dirname(file), { recursive: true });
    // Written beside, then renamed: never a half-written caption under its name.
    await writeFile(`${file}.partial`, `${captions[image.id] ?? review.triggerWord}\n`);
    await rename(`${file}.partial`, file);
  }
  return { files: manifest.images.length, dir: out };
}

/** Every `.txt` under `dir`, relative, with "/" separators. */
async function textFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => {
    throw new CliError(`${dir}: not a directory`);
  });
  return entries.filter((e) => e.isFile() && e.name.endsWith('.txt')).map((e) => path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join('/'));
}

/** Reads every file first and writes the captions once: a bad file changes nothing. */
export async function pushCaptions(client: Client, config: Config, id: string, dir: string): Promise<{ changed: number; images: number }> {
  const review = await underReview(client, id);
  const storage = makeStorage(config);
  const [manifest, captions] = await Promise.all([getJson<DatasetManifest>(storage, review.manifestKey), getJson<Captions>(storage, review.captionsKey)]);
  const byFile = new Map(manifest.images.map((image) => [textFileOf(image.source).split(path.sep).join('/'), image]));
  const files = await textFiles(dir);
  const unknown = files.filter((f) => !byFile.has(f));
  if (unknown.length) throw new CliError(`${path.join(dir, unknown[0]!)}: no image of this run is named like it (expected one of: ${[...byFile.keys()].slice(0, 5).join(', ')}…)`);
  const next: Captions = { ...captions };
  let changed = 0;
  for (const file of files) {
    const text = (await readFile(path.join(dir, file), 'utf8')).replace(/\s+/g, ' ').trim();
    if (!text) throw new CliError(`${path.join(dir, file)}: empty caption (write at least the trigger word ${review.triggerWord})`);
    const caption = withTrigger(review.triggerWord, text);
    if (caption.length > MAX_CAPTION) throw new CliError(`${path.join(dir, file)}: caption is ${caption.length} characters, at most ${MAX_CAPTION}`);
    const image = byFile.get(file)!;
    if (next[image.id] !== caption) changed++;
    next[image.id] = caption;
  }
  await putBytes(storage, review.captionsKey, JSON.stringify(next, null, 1), 'application/json');
  return { changed, images: files.length };
}

export async function continueRun(client: Client, id: string): Promise<void> {
  await underReview(client, id);
  await client.workflow
    .getHandle(id)
    .executeUpdate(continueUpdate)
    .catch((err: unknown) => {
      throw new CliError(`pipeline ${id}: ${err instanceof Error ? err.message : String(err)}`, 'conflict');
    });
}
