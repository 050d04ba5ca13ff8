// Removes a JPEG's metadata without re-encoding it: every segment a decoder reads is copied byte
// for byte (so the pixels cannot change), every other one is dropped: EXIF and XMP (APP1), MPF and
// FlashPix (APP2), IPTC/Photoshop (APP13), other APPn, comments, and anything after EOI (a phone's
// appended depth map or motion-photo video). Kept: JFIF (APP0, without its thumbnail), ICC profiles
// (APP2 ICC_PROFILE: the colours mean nothing without them) and Adobe (APP14: it says whether the
// components are YCbCr or RGB/CMYK). A file this cannot vouch for throws NotStrippable, and the
// caller re-encodes it instead.
import { NotStrippable } from './strip.js';

const SOI = 0xd8;
const EOI = 0xd9;
const SOS = 0xda;
const COM = 0xfe;
const APP0 = 0xe0;
const APP2 = 0xe2;
const APP14 = 0xee;
/** Frames kept as is: baseline, extended and progressive Huffman (what every decoder reads). */
const KEPT_FRAMES = new Set([0xc0, 0xc1, 0xc2]);
/** Tables and markers between frame and scans that decoding needs: DHT, DQT, DNL, DRI. */
const TABLES = new Set([0xc4, 0xdb, 0xdc, 0xdd]);

const startsWith = (segment: Buffer, tag: string) => segment.subarray(4, 4 + tag.length).toString('latin1') === tag;

export function stripJpeg(input: Buffer): Buffer {
  if (input.length < 4 || input[0] !== 0xff || input[1] !== SOI) throw new NotStrippable('not a JPEG (no SOI marker)');
  const parts: Buffer[] = [input.subarray(0, 2)];
  let pos = 2;
  let frame = false;
  let scans = 0;
  for (;;) {
    if (input[pos] !== 0xff) throw new NotStrippable(pos >= input.length ? 'truncated (no EOI marker)' : `bytes outside any segment at offset ${pos}`);
    while (input[pos] === 0xff) pos++; // fill bytes before a marker
    if (pos >= input.length) throw new NotStrippable('truncated (no EOI marker)');
    const marker = input[pos++]!;
    if (marker === EOI) {
      if (!frame || !scans) throw new NotStrippable('no frame or no scan before EOI');
      parts.push(Buffer.from([0xff, EOI])); // whatever follows EOI is not part of this image
      return Buffer.concat(parts);
    }
    if (pos + 2 > input.length) throw new NotStrippable('truncated segment');
    const end = pos + input.readUInt16BE(pos);
    if (end < pos + 2 || end > input.length) throw new NotStrippable(`segment 0x${marker.toString(16)} runs past the end`);
    const segment = input.subarray(pos - 2, end); // FF, marker, length, payload
    pos = end;
    if (marker >= APP0 && marker <= 0xef) {
      if (marker === APP0 && startsWith(segment, 'JFIF\0') && segment.length >= 18) parts.push(withoutThumbnail(segment));
      else if (marker === APP2 && startsWith(segment, 'ICC_PROFILE\0')) parts.push(segment);
      else if (marker === APP14 && startsWith(segment, 'Adobe')) parts.push(segment);
    } else if (marker === COM) {
      // dropped
    } else if (KEPT_FRAMES.has(marker)) {
      if (frame) throw new NotStrippable('more than one frame');
      checkFrame(segment);
      frame = true;
      parts.push(segment);
    } else if (TABLES.has(marker)) {
      parts.push(segment);
    } else if (marker === SOS) {
      if (!frame) throw new NotStrippable('a scan before the frame header');
      scans++;
      const data = entropyCodedEnd(input, pos);
      parts.push(segment, input.subarray(pos, data));
      pos = data;
    } else {
      // Arithmetic coding, lossless, hierarchical, 12-bit, JPEG extensions, stray RSTn: re-encoded.
      throw new NotStrippable(`marker 0x${marker.toString(16)} is not one kept as is`);
    }
  }
}

/** 8-bit samples, one (grey) or three (YCbCr/RGB) components; CMYK and 12-bit are re-encoded. */
function checkFrame(segment: Buffer) {
  if (segment.length < 10) throw new NotStrippable('short frame header');
  const precision = segment[4]!;
  const components = segment[9]!;
  if (precision !== 8) throw new NotStrippable(`${precision}-bit samples`);
  if (components !== 1 && components !== 3) throw new NotStrippable(`${components} components`);
}

/** JFIF may carry an uncompressed thumbnail: the header is kept, the thumbnail (a copy of the photo) is not. */
function withoutThumbnail(segment: Buffer): Buffer {
  if (segment[16] === 0 && segment[17] === 0 && segment.length === 18) return segment;
  const out = Buffer.from(segment.subarray(0, 18));
  out.writeUInt16BE(16, 2);
  out[16] = 0;
  out[17] = 0;
  return out;
}

/** Where a scan's entropy-coded data ends: the first 0xFF that is neither stuffing (FF 00) nor a restart marker. */
function entropyCodedEnd(input: Buffer, from: number): number {
  let i = from;
  for (;;) {
    i = input.indexOf(0xff, i);
    if (i < 0 || i + 1 >= input.length) throw new NotStrippable('truncated scan (no EOI marker)');
    const next = input[i + 1]!;
    if (next === 0x00 || (next >= 0xd0 && next <= 0xd7)) i += 2;
    else return i;
  }
}
