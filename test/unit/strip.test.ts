// The metadata strippers (lib/strip-*.ts) under fast-check: random metadata segments and chunks
// (EXIF, XMP, IPTC, MPF, comments, PNG text/time/eXIf, private chunks, trailing bytes) inserted
// at random legal places in real encoder output. Stripping the result gives the same bytes as
// stripping the clean file, none of the inserted payload survives, and it decodes to exactly the
// original's pixels.
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { NotStrippable } from '../../lib/strip.js';
import { stripJpeg } from '../../lib/strip-jpeg.js';
import { stripPng } from '../../lib/strip-png.js';
import { stripWebp } from '../../lib/strip-webp.js';

const RUNS = Number(process.env.LORAFLOW_FUZZ_RUNS ?? 150);
const SECRET = 'SECRET-GPS-51.5N';

const pixelsOf = async (bytes: Buffer) => (await sharp(bytes).raw().toBuffer({ resolveWithObject: true })).data;

/** A small photo-like image: a gradient with noise, so every codec has real work to do. */
function source(width: number, height: number, channels: 3 | 4, seed: number) {
  const raw = Buffer.alloc(width * height * channels);
  let s = seed;
  for (let i = 0; i < raw.length; i++) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    raw[i] = ((i % (width * channels)) + (s >> 24)) & 255;
  }
  return sharp(raw, { raw: { width, height, channels } });
}

/** Offsets in a well-formed JPEG where a marker segment may start: before the first scan, and before each later scan. */
function jpegSlots(jpeg: Buffer): number[] {
  const slots: number[] = [];
  let pos = 2;
  for (;;) {
    slots.push(pos);
    const marker = jpeg[pos + 1]!;
    if (marker === 0xd9) return slots.slice(0, -1); // not before EOI
    const end = pos + 2 + jpeg.readUInt16BE(pos + 2);
    if (marker !== 0xda) {
      pos = end;
      continue;
    }
    let i = end;
    for (;;) {
      i = jpeg.indexOf(0xff, i);
      const next = jpeg[i + 1]!;
      if (next === 0 || (next >= 0xd0 && next <= 0xd7)) i += 2;
      else break;
    }
    pos = i;
  }
}

const segment = (marker: number, payload: Buffer) => {
  const head = Buffer.from([0xff, marker, 0, 0]);
  head.writeUInt16BE(payload.length + 2, 2);
  return Buffer.concat([head, payload]);
};

const JPEG_JUNK = [
  () => segment(0xe1, Buffer.from(`Exif\x00\x00MM\x00*\x00\x00\x00\x08${SECRET}`, 'latin1')),
  () => segment(0xe1, Buffer.from(`http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>${SECRET}</x:xmpmeta>`, 'latin1')),
  () => segment(0xed, Buffer.from(`Photoshop 3.0\x008BIM${SECRET}`, 'latin1')),
  () => segment(0xe2, Buffer.from(`MPF\0${SECRET}`, 'latin1')),
  () => segment(0xe0, Buffer.from(`JFXX\0\x10${SECRET}`, 'latin1')),
  () => segment(0xef, Buffer.from(SECRET, 'latin1')),
  () => segment(0xfe, Buffer.from(`comment ${SECRET}`, 'latin1')),
];

function pngChunk(type: string, data: Buffer) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

const PNG_JUNK = [
  () => pngChunk('tEXt', Buffer.from(`Author\0${SECRET}`, 'latin1')),
  () => pngChunk('zTXt', Buffer.from(`Comment\0\0${SECRET}`, 'latin1')),
  () => pngChunk('iTXt', Buffer.from(`XML:com.adobe.xmp\0\0\0\0\0${SECRET}`, 'latin1')),
  () => pngChunk('tIME', Buffer.from([0x07, 0xe8, 1, 2, 3, 4, 5])),
  () => pngChunk('eXIf', Buffer.from(`MM\x00*\x00\x00\x00\x08${SECRET}`, 'latin1')),
  () => pngChunk('pHYs', Buffer.from([0, 0, 0x0b, 0x13, 0, 0, 0x0b, 0x13, 1])),
  () => pngChunk('prVt', Buffer.from(SECRET, 'latin1')),
];

/** PNG chunk boundaries after IHDR, up to IEND, never between two IDATs. */
function pngSlots(png: Buffer): number[] {
  const slots: number[] = [];
  let pos = 8;
  let previous = '';
  for (;;) {
    const type = png.toString('latin1', pos + 4, pos + 8);
    if (previous && !(previous === 'IDAT' && type === 'IDAT')) slots.push(pos);
    if (type === 'IEND') return slots;
    previous = type;
    pos += 12 + png.readUInt32BE(pos);
  }
}

function webpChunk(fourcc: string, data: Buffer) {
  const pad = data.length & 1;
  const out = Buffer.alloc(8 + data.length + pad);
  out.write(fourcc, 0, 'latin1');
  out.writeUInt32LE(data.length, 4);
  data.copy(out, 8);
  return out;
}

/** A WebP in the extended (VP8X) form, so metadata chunks may be added; `chunks` after the VP8X header. */
function webpExtended(webp: Buffer, width: number, height: number, extra: { at: number; chunk: Buffer }[], flags: number) {
  const body: Buffer[] = [];
  let pos = 12;
  let alpha = 0;
  while (pos < webp.length) {
    const size = webp.readUInt32LE(pos + 4);
    const fourcc = webp.toString('latin1', pos, pos + 4);
    if (fourcc === 'VP8X') alpha = webp[pos + 8]! & 0x10;
    else body.push(webp.subarray(pos, pos + 8 + size + (size & 1)));
    if (fourcc === 'VP8L' && (webp.readUInt32LE(pos + 9) >>> 28) & 1) alpha = 0x10; // the lossless header's alpha_is_used bit
    if (fourcc === 'ALPH') alpha = 0x10;
    pos += 8 + size + (size & 1);
  }
  for (const { at, chunk } of extra) body.splice(at % (body.length + 1), 0, chunk);
  const vp8x = Buffer.alloc(10);
  vp8x[0] = flags | alpha;
  vp8x.writeUIntLE(width - 1, 4, 3);
  vp8x.writeUIntLE(height - 1, 7, 3);
  const all = Buffer.concat([webpChunk('VP8X', vp8x), ...body]);
  const head = Buffer.alloc(12);
  head.write('RIFF', 0, 'latin1');
  head.writeUInt32LE(4 + all.length, 4);
  head.write('WEBP', 8, 'latin1');
  return Buffer.concat([head, all]);
}

let jpegs: Buffer[];
let pngs: Buffer[];
let webps: { bytes: Buffer; width: number; height: number }[];

beforeAll(async () => {
  jpegs = [
    await source(61, 35, 3, 1).jpeg({ quality: 90 }).toBuffer(),
    await source(64, 48, 3, 2).jpeg({ quality: 80, progressive: true }).toBuffer(),
    await source(33, 17, 3, 3).jpeg({ quality: 95, chromaSubsampling: '4:4:4' }).toBuffer(),
    await source(40, 40, 3, 4).greyscale().jpeg().toBuffer(),
    await source(48, 32, 3, 5).jpeg({ optimiseCoding: true, quality: 70 }).toBuffer(),
  ];
  pngs = [
    await source(37, 21, 3, 6).png().toBuffer(),
    await source(30, 30, 4, 7).png({ compressionLevel: 9 }).toBuffer(),
    await source(25, 19, 3, 8).png({ palette: true, colours: 16 }).toBuffer(),
    await source(20, 20, 3, 9).greyscale().png({ progressive: true }).toBuffer(),
  ];
  webps = [
    { bytes: await source(41, 23, 3, 10).webp({ quality: 80 }).toBuffer(), width: 41, height: 23 },
    { bytes: await source(32, 32, 4, 11).webp({ lossless: true }).toBuffer(), width: 32, height: 32 },
    { bytes: await source(30, 20, 4, 12).webp({ quality: 60 }).toBuffer(), width: 30, height: 20 },
  ];
});

const insertAll = (base: Buffer, slots: number[], picks: { slot: number; junk: number }[], junk: (() => Buffer)[]) => {
  const bySlot = new Map<number, Buffer[]>();
  for (const p of picks) {
    const at = slots[p.slot % slots.length]!;
    bySlot.set(at, [...(bySlot.get(at) ?? []), junk[p.junk % junk.length]!()]);
  }
  const parts: Buffer[] = [];
  let last = 0;
  for (const at of [...bySlot.keys()].sort((a, b) => a - b)) {
    parts.push(base.subarray(last, at), ...bySlot.get(at)!);
    last = at;
  }
  parts.push(base.subarray(last));
  return Buffer.concat(parts);
};

const picks = fc.array(fc.record({ slot: fc.nat(), junk: fc.nat() }), { minLength: 1, maxLength: 8 });
const trailer = fc.option(fc.uint8Array({ minLength: 1, maxLength: 40 }), { nil: undefined });

describe('stripJpeg', () => {
  it(`removes every inserted APPn/COM segment and trailer, keeping the pixels (${RUNS} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(), picks, trailer, fc.boolean(), async (which, inserted, tail, fill) => {
        const base = jpegs[which % jpegs.length]!;
        let dirty = insertAll(base, jpegSlots(base), inserted, JPEG_JUNK);
        if (fill) dirty = Buffer.concat([dirty.subarray(0, 2), Buffer.from([0xff, 0xff]), dirty.subarray(2)]); // fill bytes before a marker
        if (tail) dirty = Buffer.concat([dirty, Buffer.from(tail), Buffer.from(SECRET)]);
        const out = stripJpeg(dirty);
        expect(out.equals(stripJpeg(base))).toBe(true);
        expect(out.includes(SECRET)).toBe(false);
        expect((await pixelsOf(out)).equals(await pixelsOf(base))).toBe(true);
        const meta = await sharp(out).metadata();
        expect([meta.exif, meta.xmp, meta.iptc, meta.comments]).toEqual([undefined, undefined, undefined, undefined]);
      }),
      { numRuns: RUNS },
    );
  });

  it('keeps JFIF (without its thumbnail), ICC and Adobe segments; refuses what it cannot vouch for', async () => {
    const withIcc = await source(20, 20, 3, 13).jpeg().withIccProfile('p3').toBuffer();
    expect((await sharp(stripJpeg(withIcc)).metadata()).icc).toEqual((await sharp(withIcc).metadata()).icc);
    const jfif = Buffer.concat([Buffer.from([0xff, 0xd8]), segment(0xe0, Buffer.concat([Buffer.from('JFIF\0\x01\x02\0\0\x01\0\x01\x02\x01', 'latin1'), Buffer.alloc(6, 7)])), jpegs[0]!.subarray(2)]);
    const stripped = stripJpeg(jfif);
    expect(stripped.subarray(2, 20).equals(Buffer.from('\xff\xe0\0\x10JFIF\0\x01\x02\0\0\x01\0\x01\0\0', 'latin1'))).toBe(true);
    expect((await pixelsOf(stripped)).equals(await pixelsOf(jpegs[0]!))).toBe(true);
    const cmyk = await source(16, 16, 3, 14).toColourspace('cmyk').jpeg().toBuffer();
    expect(() => stripJpeg(cmyk)).toThrow(NotStrippable);
    const whole = jpegs[0]!;
    expect(() => stripJpeg(whole.subarray(0, whole.length - 2))).toThrow(/truncated/); // no EOI
    expect(() => stripJpeg(whole.subarray(0, 100))).toThrow(NotStrippable);
    expect(() => stripJpeg(Buffer.from('not a jpeg'))).toThrow(NotStrippable);
  });
});

describe('stripPng', () => {
  it(`removes every inserted text, time, eXIf and private chunk and trailer, keeping the pixels (${RUNS} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(), picks, trailer, async (which, inserted, tail) => {
        const base = pngs[which % pngs.length]!;
        let dirty = insertAll(base, pngSlots(base), inserted, PNG_JUNK);
        if (tail) dirty = Buffer.concat([dirty, Buffer.from(tail), Buffer.from(SECRET)]);
        const out = stripPng(dirty);
        expect(out.equals(stripPng(base))).toBe(true);
        expect(out.includes(SECRET)).toBe(false);
        expect(['tEXt', 'zTXt', 'iTXt', 'tIME', 'eXIf', 'pHYs', 'prVt'].some((t) => out.includes(t))).toBe(false);
        expect((await pixelsOf(out)).equals(await pixelsOf(base))).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it('keeps transparency and colour chunks; refuses 16-bit, truncated and unknown critical chunks', async () => {
    const palette = pngs[2]!;
    const withTrns = insertAll(palette, [pngSlots(palette).find((s) => palette.toString('latin1', s + 4, s + 8) === 'IDAT')!], [{ slot: 0, junk: 0 }], [() => pngChunk('tRNS', Buffer.from([0, 128]))]);
    const out = stripPng(withTrns);
    expect(out.includes('tRNS')).toBe(true);
    expect((await pixelsOf(out)).equals(await pixelsOf(withTrns))).toBe(true);
    const deep = await sharp(Buffer.alloc(8 * 8 * 6, 0x40), { raw: { width: 8, height: 8, channels: 3 } }).toColourspace('rgb16').png().toBuffer();
    expect(() => stripPng(deep)).toThrow(/16-bit/);
    expect(() => stripPng(pngs[0]!.subarray(0, pngs[0]!.length - 12))).toThrow(/truncated/);
    const critical = insertAll(pngs[0]!, [pngSlots(pngs[0]!)[0]!], [{ slot: 0, junk: 0 }], [() => pngChunk('ABCD', Buffer.alloc(3))]);
    expect(() => stripPng(critical)).toThrow(/critical/);
  });
});

describe('stripWebp', () => {
  const exif = () => webpChunk('EXIF', Buffer.from(`MM\x00*\x00\x00\x00\x08${SECRET}`, 'latin1'));
  const xmp = () => webpChunk('XMP ', Buffer.from(`<x:xmpmeta>${SECRET}</x:xmpmeta>`, 'latin1'));
  const unknown = () => webpChunk('ZZZZ', Buffer.from(SECRET + 'x', 'latin1'));

  it(`removes EXIF, XMP and unknown chunks, clears their flags and fixes the RIFF size, keeping the pixels (${RUNS} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(), picks, trailer, async (which, inserted, tail) => {
        const { bytes, width, height } = webps[which % webps.length]!;
        const extra = inserted.map((p) => ({ at: p.slot, chunk: [exif, xmp, unknown][p.junk % 3]!() }));
        let dirty = webpExtended(bytes, width, height, extra, 0x08 | 0x04);
        if (tail) dirty = Buffer.concat([dirty, Buffer.from(tail), Buffer.from(SECRET)]);
        const out = stripWebp(dirty);
        expect(out.equals(stripWebp(webpExtended(bytes, width, height, [], 0)))).toBe(true);
        expect(out.includes(SECRET)).toBe(false);
        expect(out.readUInt32LE(4)).toBe(out.length - 8);
        expect(out[20]! & 0x0c).toBe(0);
        const meta = await sharp(out).metadata();
        expect([meta.exif, meta.xmp]).toEqual([undefined, undefined]);
        expect((await pixelsOf(out)).equals(await pixelsOf(bytes))).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it('keeps a simple WebP as it is and refuses animations and truncations', async () => {
    const simple = webps[0]!.bytes;
    expect(stripWebp(simple).equals(simple)).toBe(true);
    const animated = webpExtended(simple, 41, 23, [], 0x02);
    expect(() => stripWebp(animated)).toThrow(/animated/);
    expect(() => stripWebp(simple.subarray(0, simple.length - 10))).toThrow(/truncated/);
  });
});
