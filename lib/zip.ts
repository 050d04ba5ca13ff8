// Reads a dataset .zip into memory with guards against zip slip, absolute paths, symlinks and
// zip bombs (entry and total size caps checked against the bytes actually inflated).
import yauzl from 'yauzl';

export interface ZipEntry {
  name: string;
  data: Buffer;
}

export interface ZipLimits {
  maxEntryBytes: number;
  maxTotalBytes: number;
  maxEntries: number;
}

export const DEFAULT_ZIP_LIMITS: ZipLimits = { maxEntryBytes: 64 * 2 ** 20, maxTotalBytes: 2 * 2 ** 30, maxEntries: 20_000 };

export async function readZip(file: string, limits: ZipLimits = DEFAULT_ZIP_LIMITS): Promise<ZipEntry[]> {
  const zip = await yauzl.openPromise(file, { autoClose: false, lazyEntries: true, strictFileNames: true }).catch((err: Error) => {
    throw new Error(`${file} is not a readable zip: ${err.message}`);
  });
  const entries: ZipEntry[] = [];
  const seen = new Set<string>();
  let total = 0;
  try {
    for await (const entry of zip.eachEntry()) {
      const name = entry.fileName;
      if (name.endsWith('/')) continue;
      if (name.startsWith('/') || name.split('/').includes('..')) throw new Error(`${file}: unsafe path in zip: ${name}`);
      // Unix mode lives in the high 16 bits; 0o120000 is a symlink.
      if (((entry.externalFileAttributes >>> 16) & 0o170000) === 0o120000) throw new Error(`${file}: symlink in zip: ${name}`);
      if (entries.length >= limits.maxEntries) throw new Error(`${file}: more than ${limits.maxEntries} entries`);
      if (seen.has(name)) throw new Error(`${file}: ${name} appears twice in the zip`);
      seen.add(name);
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of await zip.openReadStreamPromise(entry)) {
        size += (chunk as Buffer).length;
        total += (chunk as Buffer).length;
        if (size > limits.maxEntryBytes) throw new Error(`${file}: ${name} inflates past ${limits.maxEntryBytes} bytes`);
        if (total > limits.maxTotalBytes) throw new Error(`${file}: inflates past ${limits.maxTotalBytes} bytes in total`);
        chunks.push(chunk as Buffer);
      }
      entries.push({ name, data: Buffer.concat(chunks) });
    }
  } finally {
    zip.close();
  }
  return entries.sort((a, b) => a.name.localeCompare(b.name));
}
