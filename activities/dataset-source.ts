// Where a dataset comes from, each kind refused unless the operator allowed it: a directory or
// .zip under one of LORAFLOW_DATASET_ROOTS, an https URL of a .zip (dataset-url.ts) or the objects
// under an s3://bucket/prefix/ of LORAFLOW_DATASET_BUCKETS (dataset-s3.ts). A dataset source may
// come from the network (an API), so nothing here trusts it.
import { realpath, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { openZip } from '../lib/zip.js';
import { BadFile, type DatasetFile, invalid, MAX_FILE_BYTES, MAX_FILES, type OpenedDataset } from './dataset-files.js';
import { fromS3, zipFromS3 } from './dataset-s3.js';
import { fromUrl } from './dataset-url.js';
import type { ActivityDeps } from './deps.js';

export async function openDataset(deps: ActivityDeps, source: string): Promise<OpenedDataset> {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source) && !/^(https?|s3):\/\//i.test(source)) throw invalid(`${source.split('://')[0]}:// datasets are not supported: use a directory, a .zip, https:// or s3://`);
  if (/^https?:\/\//i.test(source)) return fromUrl(deps, source, (file) => fromZip(file));
  if (source.startsWith('s3://')) {
    const files = await fromS3(deps, source);
    // A prefix holding one .zip (an API upload of a zip) is that zip's dataset.
    if (files.length === 1 && files[0]!.name.toLowerCase().endsWith('.zip')) return zipFromS3(deps, source, files[0]!.name, (file) => fromZip(file));
    return { files, close: async () => undefined };
  }
  return fromLocalPath(deps, source);
}

/** Inside one of the roots, both as written and once symlinks are resolved. */
async function insideRoots(deps: ActivityDeps, target: string, resolveLinks: boolean): Promise<boolean> {
  const roots = deps.datasets.roots;
  for (const root of roots) {
    const base = resolveLinks ? await realpath(root).catch(() => undefined) : path.resolve(root);
    if (base && (target === base || target.startsWith(base.endsWith(path.sep) ? base : base + path.sep))) return true;
  }
  return false;
}

async function fromLocalPath(deps: ActivityDeps, datasetPath: string): Promise<OpenedDataset> {
  const outside = invalid(`${datasetPath} is not under a dataset root: local datasets are read only from LORAFLOW_DATASET_ROOTS`);
  if (!path.isAbsolute(datasetPath) || !(await insideRoots(deps, path.resolve(datasetPath), false))) throw outside;
  const info = await stat(datasetPath).catch(() => undefined);
  if (!info) throw invalid(`dataset not found: ${datasetPath}`);
  const real = await realpath(datasetPath);
  if (!(await insideRoots(deps, real, true))) throw outside; // a symlink out of the root
  if (info.isFile() && datasetPath.toLowerCase().endsWith('.zip')) return fromZip(real);
  if (!info.isDirectory()) throw invalid(`dataset must be a directory or a .zip: ${datasetPath}`);
  const entries = await readdir(real, { recursive: true, withFileTypes: true });
  const files = entries
    .filter((e) => e.isFile()) // symlinks are not followed
    .map((e): DatasetFile => {
      const full = path.join(e.parentPath, e.name);
      const name = path.relative(real, full);
      return {
        name,
        read: async () => {
          const { size } = await stat(full);
          if (size > MAX_FILE_BYTES) throw new BadFile(`larger than ${MAX_FILE_BYTES} bytes`);
          return readFile(full);
        },
      };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
  if (files.length > MAX_FILES) throw invalid(`${datasetPath}: more than ${MAX_FILES} files`);
  return { files, close: async () => undefined };
}

async function fromZip(file: string): Promise<OpenedDataset> {
  const zip = await openZip(file).catch((err: Error) => {
    throw invalid(err.message);
  });
  return {
    files: zip.entries.map((e) => ({
      name: e.name,
      bytes: e.bytes,
      read: () => e.read().catch((err: Error) => {
        throw new BadFile(err.message);
      }),
    })),
    close: async () => zip.close(),
  };
}
