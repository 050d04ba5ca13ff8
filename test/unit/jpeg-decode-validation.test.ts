// Why ingest still decodes every JPEG it keeps (activities/ingest-image.ts decodes()) rather than
// trusting a structure check: libjpeg reports corrupt entropy-coded data (a bad Huffman code) only
// as a warning, but libvips turns its 100th warning into an error, and libjpeg warns on its slow
// decoding path: every progressive scan, and the last few KB of a baseline scan. A file whose
// segments are all well formed is refused for damage that only the entropy decode sees, so a
// structure check cannot refuse everything the decode refuses (bench/proposals/jpeg-structure-check.patch).
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodes } from '../../activities/ingest-image.js';
import { stripJpeg } from '../../lib/strip-jpeg.js';

/** A noisy photo-like image, so the entropy-coded data is long. */
function photo(size: number) {
  const raw = Buffer.alloc(size * size * 3);
  let s = 1;
  for (let i = 0; i < raw.length; i++) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    raw[i] = ((i % (size * 3)) + (s >> 24)) & 255;
  }
  return sharp(raw, { raw: { width: size, height: size, channels: 3 } });
}

/** `bytes` bytes from `at` set to FF 00 (stuffed all-ones bits: no Huffman code), the segment structure untouched. */
function allOnes(jpeg: Buffer, at: number, bytes: number) {
  const out = Buffer.from(jpeg);
  for (let i = at; i < at + bytes; i += 2) {
    out[i] = 0xff;
    out[i + 1] = 0;
  }
  return out;
}

describe('decodes() on JPEGs with corrupt entropy-coded data and intact structure', () => {
  it('refuses a progressive JPEG with bad Huffman codes in a scan, and a baseline one with them near its end', async () => {
    const progressive = await photo(512).jpeg({ quality: 90, progressive: true }).toBuffer();
    const baseline = await photo(512).jpeg({ quality: 90 }).toBuffer();
    expect(await decodes(stripJpeg(progressive))).toBe(true);
    expect(await decodes(stripJpeg(baseline))).toBe(true);
    const damagedProgressive = stripJpeg(allOnes(progressive, Math.floor(progressive.length / 2) & ~1, 2000));
    const damagedBaseline = stripJpeg(allOnes(baseline, (baseline.length - 3000) & ~1, 1000));
    expect(await decodes(damagedProgressive)).toBe(false);
    expect(await decodes(damagedBaseline)).toBe(false);
    // The same damage in the middle of a baseline scan is decoded on libjpeg's fast path, silently.
    expect(await decodes(stripJpeg(allOnes(baseline, Math.floor(baseline.length / 2) & ~1, 2000)))).toBe(true);
  });
});
