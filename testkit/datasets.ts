// Small generated datasets for tests: distinct PNGs, optional sidecar captions.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';

export async function makeDataset(dir: string, opts: { images: number; captioned: number; size?: number }): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const size = opts.size ?? 32;
  for (let i = 0; i < opts.images; i++) {
    const pixels = Buffer.alloc(size * size * 3);
    for (let p = 0; p < pixels.length; p += 3) pixels.set([(i * 53) % 256, (i * 97) % 256, (i * 151) % 256], p);
    pixels.set([i & 255, (i >> 8) & 255, (i >> 16) & 255]); // first pixel: the index, so every image differs
    const png = await sharp(pixels, { raw: { width: size, height: size, channels: 3 } }).png().toBuffer();
    writeFileSync(path.join(dir, `img-${i}.png`), png);
    if (i < opts.captioned) writeFileSync(path.join(dir, `img-${i}.txt`), `a test square number ${i}`);
  }
  return dir;
}
