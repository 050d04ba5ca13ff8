// Opens a dataset .zip on disk without holding it in memory: its central directory is read first
// and refused as a whole on zip slip, absolute paths, symlinks, duplicate names, too many entries,
// too many bytes declared or an entry that inflates far beyond its compressed size (a zip bomb
// by ratio); entries are then inflated one at a time on demand, capped by the bytes actually
// inflated (a lying header stops there too).
import yauzl, { type Entry, type ZipFile } from 'yauzl';

export interface ZipLimits {
  maxEntryBytes: number;
  maxTotalBytes: number;
  maxEntries: number;
  /** Most an entry may inflate per compressed byte (images barely compress: ~1–3). */
  maxRatio: number;
}

export const DEFAULT_ZIP_LIMITS: ZipLimits = { maxEntryBytes: 64 * 2 ** 20, maxTotalBytes: 2 * 2 ** 30, maxEntries: 20_000, maxRatio: 100 };
/** Small entries (sidecar captions, empty files) compress well without being bombs. */
const RATIO_FREE_BYTES = 64 * 1024;

export interface ZipEntryRef {
  name: string;
  /** As declared in the central directory (checked again while inflating). */
  bytes: number;
  read(): Promise<Buffer>;
}

export interface OpenedZip {
  entries: ZipEntryRef[];
  close(): void;
}

export async function openZip(file: string, limits: ZipLimits = DEFAULT_ZIP_LIMITS): Promise<OpenedZip> {
  const zip = await yauzl.openPromise(file, { autoClose: false, lazyEntries: true, strictFileNames: true }).catch((err: Error) => {
    throw new Error(`${file} is not a readable zip: ${err.message}`);
  });
  try {
    const listed = await checkedEntries(zip, file, limits);
    return {
      entries: listed.map((entry) => ({ name: entry.fileName, bytes: entry.uncompressedSize, read: () => inflate(zip, entry, file, limits) })),
      close: () => zip.close(),
    };
  } catch (err) {
    zip.close();
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(message.startsWith(file) ? message : `${file} is not a readable zip: ${message}`);
  }
}

async function checkedEntries(zip: ZipFile, file: string, limits: ZipLimits): Promise<Entry[]> {
  const entries: Entry[] = [];
  const seen = new Set<string>();
  let total = 0;
  for await (const entry of zip.eachEntry()) {
    const name = entry.fileName;
    if (name.endsWith('/')) continue;
    if (name.startsWith('/') || name.split('/').includes('..')) throw new Error(`${file}: unsafe path in zip: ${name}`);
    // Unix mode lives in the high 16 bits; 0o120000 is a symlink.
    if (((entry.externalFileAttributes >>> 16) & 0o170000) === 0o120000) throw new Error(`${file}: symlink in zip: ${name}`);
    if (entries.length >= limits.maxEntries) throw new Error(`${file}: more than ${limits.maxEntries} entries`);
    if (seen.has(name)) throw new Error(`${file}: ${name} appears twice in the zip`);
    if (entry.uncompressedSize > limits.maxEntryBytes) throw new Error(`${file}: ${name} inflates past ${limits.maxEntryBytes} bytes (${entry.uncompressedSize} declared)`);
    if (entry.uncompressedSize > RATIO_FREE_BYTES && entry.uncompressedSize > limits.maxRatio * Math.max(1, entry.compressedSize)) {
      throw new Error(`${file}: ${name} has a compression ratio of ${Math.round(entry.uncompressedSize / Math.max(1, entry.compressedSize))}:1 (at most ${limits.maxRatio}:1): a zip bomb, not an image`);
    }
    total += entry.uncompressedSize;
    if (total > limits.maxTotalBytes) throw new Error(`${file}: inflates past ${limits.maxTotalBytes} bytes in total`);
    seen.add(name);
    entries.push(entry);
  }
  return entries.sort((a, b) => a.fileName.localeCompare(b.fileName));
}

async function inflate(zip: ZipFile, entry: Entry, file: string, limits: ZipLimits): Promise<Buffer> {
  const name = entry.fileName;
  const cap = Math.min(limits.maxEntryBytes, entry.uncompressedSize);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of await zip.openReadStreamPromise(entry)) {
      size += (chunk as Buffer).length;
      if (size > cap) throw new Error(`${file}: ${name} inflates past ${cap} bytes`);
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(message.startsWith(file) ? message : `${file}: ${name} cannot be read: ${message}`);
  }
  return Buffer.concat(chunks);
}
