// A dataset's files, whatever their source (dataset-source.ts), and what each one is by its name:
// an image to decode, a sidecar caption, operating-system junk to ignore without a word (macOS
// zips' __MACOSX/ and ._ files, .DS_Store, Thumbs.db), or something skipped for a reason the run's
// result lists.
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import sharp from 'sharp';
import { DEFAULT_ZIP_LIMITS } from '../lib/zip.js';

export interface DatasetFile {
  name: string;
  /** Its size, where known before reading (checked against MAX_FILE_BYTES before decoding). */
  bytes?: number;
  read(): Promise<Buffer>;
}

/** The files of a dataset; `close()` removes whatever opening it left on disk (a downloaded zip). */
export interface OpenedDataset {
  files: DatasetFile[];
  close(): Promise<void>;
}

/** The most one file of a dataset may be (an image that large is a bomb, not a photo). */
export const MAX_FILE_BYTES = DEFAULT_ZIP_LIMITS.maxEntryBytes;
/** The most files one dataset may list (before anything is decoded). */
export const MAX_FILES = DEFAULT_ZIP_LIMITS.maxEntries;

export const invalid = (message: string) => ApplicationFailure.nonRetryable(message, 'InvalidDataset');

/** A file's own fault (too large, a corrupt zip entry): the file is named and rejected. Any other
 * error while reading (the store, the disk) is not the dataset's fault and is retried. */
export class BadFile extends Error {
  override name = 'BadFile';
}

export type FileKind = { kind: 'image' } | { kind: 'sidecar' } | { kind: 'junk' } | { kind: 'skipped'; reason: string };

/** Formats sharp decodes in every build (its prebuilt libvips). */
const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg', '.jpe', '.jfif', '.webp', '.gif', '.tif', '.tiff', '.avif']);
/** HEIC needs libheif with an HEVC decoder, which sharp's prebuilt binaries leave out (patents). */
const HEIC_EXT = new Set(['.heic', '.heif']);
export const heicSupported = () => (sharp.format.heif?.input.fileSuffix ?? []).includes('.heic');
export const IMAGE_EXTENSIONS = () => [...IMAGE_EXT, ...(heicSupported() ? HEIC_EXT : [])];

const JUNK_NAMES = new Set(['.ds_store', 'thumbs.db', 'desktop.ini', 'ehthumbs.db', '.localized']);

export function classify(name: string): FileKind {
  const parts = name.split(/[\\/]/);
  const base = parts.at(-1)!;
  if (parts.some((p) => p === '__MACOSX' || p === '.Spotlight-V100' || p === '.Trashes' || p === '.fseventsd') || base.startsWith('._') || JUNK_NAMES.has(base.toLowerCase())) {
    return { kind: 'junk' };
  }
  const ext = path.extname(base).toLowerCase();
  if (ext === '.txt') return { kind: 'sidecar' };
  if (IMAGE_EXT.has(ext)) return { kind: 'image' };
  if (HEIC_EXT.has(ext)) {
    return heicSupported() ? { kind: 'image' } : { kind: 'skipped', reason: 'HEIC is not supported by this build of sharp (no HEVC decoder): convert it to JPEG or PNG' };
  }
  if (ext === '.svg' || ext === '.svgz') return { kind: 'skipped', reason: 'vector art (SVG) is not a training image' };
  return { kind: 'skipped', reason: `not an image (looked for ${IMAGE_EXTENSIONS().join(', ')})` };
}
