// Removes a WebP's metadata without re-encoding it: EXIF and XMP chunks (and unknown ones) are
// dropped, the VP8X header's EXIF/XMP flags cleared and the RIFF size rewritten; the bitstream
// (VP8/VP8L), its alpha (ALPH) and ICC profile are copied byte for byte. Animations throw
// NotStrippable: their first frame is re-encoded.
import { NotStrippable } from './strip.js';

const EXIF_FLAG = 0x08;
const XMP_FLAG = 0x04;
const ANIMATION_FLAG = 0x02;
const ICC_FLAG = 0x20;
const KEPT = new Set(['VP8X', 'ICCP', 'ALPH', 'VP8 ', 'VP8L']);

export function stripWebp(input: Buffer): Buffer {
  if (input.length < 20 || input.toString('latin1', 0, 4) !== 'RIFF' || input.toString('latin1', 8, 12) !== 'WEBP') throw new NotStrippable('not a WebP (no RIFF/WEBP header)');
  const riffEnd = 8 + input.readUInt32LE(4); // anything after the RIFF is not part of the image
  if (riffEnd > input.length) throw new NotStrippable('truncated (shorter than its RIFF size)');
  const chunks: Buffer[] = [];
  let pos = 12;
  let vp8x: Buffer | undefined;
  let bitstream = false;
  let icc = false;
  while (pos < riffEnd) {
    if (pos + 8 > riffEnd) throw new NotStrippable('truncated chunk header');
    const fourcc = input.toString('latin1', pos, pos + 4);
    const size = input.readUInt32LE(pos + 4);
    const end = pos + 8 + size + (size & 1); // chunks are padded to an even size
    if (end > riffEnd && pos + 8 + size !== riffEnd) throw new NotStrippable(`chunk ${JSON.stringify(fourcc)} runs past the end`);
    const chunk = Buffer.alloc(8 + size + (size & 1)); // padding written as zero
    input.copy(chunk, 0, pos, pos + 8 + size);
    if (pos === 12) {
      if (fourcc === 'VP8X') {
        if (size < 10) throw new NotStrippable('short VP8X chunk');
        if (chunk[8]! & ANIMATION_FLAG) throw new NotStrippable('animated');
        vp8x = chunk;
      } else if (fourcc !== 'VP8 ' && fourcc !== 'VP8L') throw new NotStrippable(`unexpected first chunk ${JSON.stringify(fourcc)}`);
    } else if (fourcc === 'VP8X') throw new NotStrippable('VP8X is not the first chunk');
    if (fourcc === 'ANIM' || fourcc === 'ANMF') throw new NotStrippable('animated');
    if (KEPT.has(fourcc) && (pos === 12 || vp8x)) {
      chunks.push(chunk);
      if (fourcc === 'VP8 ' || fourcc === 'VP8L') bitstream = true;
      if (fourcc === 'ICCP') icc = true;
    }
    pos = end;
    if (!vp8x && bitstream) break; // the simple format is one chunk: whatever follows is not read
  }
  if (!bitstream) throw new NotStrippable('no VP8/VP8L bitstream');
  if (vp8x) vp8x[8] = (vp8x[8]! & ~(EXIF_FLAG | XMP_FLAG) & ~ICC_FLAG) | (icc ? ICC_FLAG : 0);
  const body = Buffer.concat(chunks);
  const header = Buffer.alloc(12);
  header.write('RIFF', 0, 'latin1');
  header.writeUInt32LE(4 + body.length, 4);
  header.write('WEBP', 8, 'latin1');
  return Buffer.concat([header, body]);
}
