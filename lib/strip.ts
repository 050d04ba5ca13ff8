// Metadata removal without re-encoding, for the formats the GPU worker reads as stored (JPEG, PNG,
// WebP): strip-jpeg.ts, strip-png.ts, strip-webp.ts. Each copies the bytes a decoder needs and
// drops the rest, or throws NotStrippable for a file it cannot vouch for (the caller re-encodes).

/** This file is not kept as is (an unusual layout, CMYK, 16-bit, animated, broken): re-encode it. */
export class NotStrippable extends Error {
  override name = 'NotStrippable';
}
