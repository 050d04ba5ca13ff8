// Identifies a dataset by its bytes, so the same request on the same files maps to one workflow
// and a changed dataset starts a new one.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';

export async function fingerprintDataset(datasetPath: string): Promise<string> {
  const info = await stat(datasetPath).catch(() => undefined);
  if (!info) throw new Error(`--images: ${datasetPath} does not exist`);
  const files = info.isDirectory()
    ? (await readdir(datasetPath, { recursive: true, withFileTypes: true }))
        .filter((e) => e.isFile())
        .map((e) => path.join(e.parentPath, e.name))
        .sort()
    : [datasetPath];
  const all = createHash('sha256');
  for (const file of files) {
    const one = createHash('sha256');
    await pipeline(createReadStream(file), one);
    all.update(`${path.relative(datasetPath, file)}\0${one.digest('hex')}\n`);
  }
  return all.digest('hex');
}
