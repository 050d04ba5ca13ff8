// One dataset image judged: refused (it does not decode, or is a pixel bomb), kept in its own
// encoding with its metadata removed (JPEG, PNG, WebP: lib/strip-*.ts), or re-encoded as PNG when
// keeping it is unsafe or the GPU worker could not read it as is (EXIF orientation ≠ 1 to apply,
// CMYK or 12-bit JPEG, 16-bit PNG, animations, GIF/TIFF/AVIF/HEIC). What is stored is what was
// validated: the stripped bytes themselves are decoded, so a stripper's mistake cannot reach S3.
import sharp, { type Metadata } from 'sharp';
import { NotStrippable } from '../lib/strip.js';
import { stripJpeg } from '../lib/strip-jpeg.js';
import { stripPng } from '../lib/strip-png.js';
import { stripWebp } from '../lib/strip-webp.js';

/** Larger inputs are refused before decoding (decompression bombs). */
export const MAX_PIXELS = 40_000_000;

export type StoredFormat = 'jpeg' | 'png' | 'webp';

export interface JudgedImage {
  data: Buffer;
  format: StoredFormat;
  width: number;
  height: number;
  /** Why it was re-encoded rather than kept (undefined: kept, metadata removed). */
  reencoded?: string;
}

export const CONTENT_TYPES: Record<StoredFormat, string> = { jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp' };

const STRIPPERS: Record<StoredFormat, (input: Buffer) => Buffer> = { jpeg: stripJpeg, png: stripPng, webp: stripWebp };

/**
 * failOn 'error' refuses truncated files and decoding errors (libvips' "truncated" level is below
 * "error"); 'warning' would also refuse the recoverable warnings many cameras' files raise.
 */
const FAIL_ON = 'error' as const;

export async function judgeImage(input: Buffer): Promise<JudgedImage> {
  // Header only: dimensions, orientation, pages, depth. Throws at once on an empty file, so awaited in here.
  const meta = await sharp(input, { failOn: FAIL_ON }).metadata();
  const width = meta.width ?? 0;
  const height = meta.pageHeight ?? meta.height ?? 0;
  if (width * height > MAX_PIXELS) throw new Error(`Input image exceeds pixel limit (${width}x${height}, at most ${MAX_PIXELS} pixels)`);
  const reason = reencodeReason(meta);
  if (!reason) {
    const format = meta.format as StoredFormat;
    let stripped: Buffer | undefined;
    try {
      stripped = STRIPPERS[format](input);
    } catch (err) {
      if (!(err instanceof NotStrippable)) throw err;
      return reencode(input, `${format}: ${err.message}`, err.message);
    }
    // An error here is the file's (or the stripper's): the re-encode decides, with the original.
    if (await decodes(stripped)) return { data: stripped, format, width, height };
    return reencode(input, 'did not decode once stripped');
  }
  return reencode(input, reason);
}

/** Why this file cannot be stored in its own encoding; undefined when it can. */
function reencodeReason(meta: Metadata): string | undefined {
  const format = meta.format;
  if (format !== 'jpeg' && format !== 'png' && format !== 'webp') return `${format ?? 'unknown format'} is stored as PNG`;
  if (meta.orientation !== undefined && meta.orientation !== 1) return `EXIF orientation ${meta.orientation} applied`;
  if ((meta.pages ?? 1) > 1) return 'animated: first frame';
  if (meta.depth !== 'uchar') return `${meta.depth} samples`;
  if (meta.space !== 'srgb' && meta.space !== 'b-w') return `${meta.space} colour space`;
  return undefined;
}

/**
 * Decodes every byte without holding the full-size pixels: libvips shrinks JPEG and WebP on load
 * (the entropy-coded data is still read to its end, so a truncation is caught) and streams PNGs.
 */
export async function decodes(data: Buffer): Promise<boolean> {
  try {
    await sharp(data, { limitInputPixels: MAX_PIXELS, failOn: FAIL_ON }).resize(32, 32, { fit: 'inside' }).raw().toBuffer();
    return true;
  } catch {
    return false;
  }
}

/**
 * Decodes fully and re-encodes as PNG without metadata, upright; an animation or multi-page TIFF
 * gives its first frame. `found`: what the stripper saw wrong, named in the error if this fails too
 * (libvips' own message is per thread and sometimes only names its last stage).
 */
async function reencode(input: Buffer, reason: string, found?: string): Promise<JudgedImage> {
  // rotate(): EXIF orientation, before the metadata goes. sharp writes 8-bit sRGB (what the worker
  // reads): a 16-bit or CMYK input is converted, an ICC profile applied.
  const { data, info } = await sharp(input, { limitInputPixels: MAX_PIXELS, failOn: FAIL_ON, pages: 1 })
    .rotate()
    .png()
    .toBuffer({ resolveWithObject: true })
    .catch((err: Error) => {
      throw found ? new Error(`${found}: ${err.message}`) : err;
    });
  return { data, format: 'png', width: info.width, height: info.height, reencoded: reason };
}
