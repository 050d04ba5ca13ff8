// Small generated datasets for tests: distinct PNGs, optional sidecar captions.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';

export async function makeDataset(dir: string, opts: { images: number; captioned: number; size?: number }): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const size = opts.size ?? 32;
  for (let i = 0; i < opts.images; i++) {
    const png = await sharp({ create: { width: size, height: size, channels: 3, background: { r: (i * 53) % 256, g: (i * 97) % 256, b: (i * 151) % 256 } } })
      .png()
      .toBuffer();
    writeFileSync(path.join(dir, `img-${i}.png`), png);
    if (i < opts.captioned) writeFileSync(path.join(dir, `img-${i}.txt`), `a test square number ${i}`);
  }
  return dir;
}
