// Removes a PNG's metadata without re-encoding it: the chunks that make the image (IHDR, PLTE,
// IDAT, IEND) and those that say how to show it (transparency, gamma, chromaticities, sRGB, ICC,
// significant bits, CICP) are copied byte for byte, CRC included; text (tEXt, zTXt, iTXt), time,
// eXIf, physical size, private chunks, APNG frames (the still default image remains) and anything
// after IEND are dropped. 16-bit images throw NotStrippable: they are re-encoded to 8 bits.
import { NotStrippable } from './strip.js';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const KEPT = new Set(['IHDR', 'PLTE', 'IDAT', 'IEND', 'tRNS', 'gAMA', 'cHRM', 'sRGB', 'iCCP', 'sBIT', 'cICP']);

export function stripPng(input: Buffer): Buffer {
  if (input.length < SIGNATURE.length || !input.subarray(0, SIGNATURE.length).equals(SIGNATURE)) throw new NotStrippable('not a PNG (no signature)');
  const parts: Buffer[] = [SIGNATURE];
  let pos = SIGNATURE.length;
  let idat = false;
  for (;;) {
    if (pos + 12 > input.length) throw new NotStrippable('truncated (no IEND chunk)');
    const length = input.readUInt32BE(pos);
    const type = input.subarray(pos + 4, pos + 8).toString('latin1');
    const end = pos + 12 + length;
    if (length > 0x7fffffff || end > input.length) throw new NotStrippable(`chunk ${JSON.stringify(type)} runs past the end`);
    if (!/^[A-Za-z]{4}$/.test(type)) throw new NotStrippable(`bad chunk type at offset ${pos}`);
    const first = pos === SIGNATURE.length;
    if (first !== (type === 'IHDR')) throw new NotStrippable('IHDR is not the first chunk');
    if (type === 'IHDR') {
      if (length !== 13) throw new NotStrippable('bad IHDR');
      const depth = input[pos + 8 + 8]!;
      if (depth > 8) throw new NotStrippable(`${depth}-bit samples`);
    }
    // An unknown critical chunk (upper-case first letter) is one no decoder may skip.
    if (!KEPT.has(type) && type.charCodeAt(0) < 0x61) throw new NotStrippable(`unknown critical chunk ${type}`);
    if (KEPT.has(type)) parts.push(input.subarray(pos, end));
    if (type === 'IDAT') idat = true;
    pos = end;
    if (type === 'IEND') {
      if (!idat) throw new NotStrippable('no image data');
      return Buffer.concat(parts);
    }
  }
}
