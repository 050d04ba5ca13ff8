// Regenerates the bundled demo dataset (samples/demo): a small red robot toy drawn on different
// backgrounds, half of them with sidecar captions. Run: npx tsx scripts/make-samples.ts
import { mkdirSync, writeFileSync } from 'node:fs';
import sharp from 'sharp';

const out = new URL('../samples/demo/', import.meta.url);
mkdirSync(out, { recursive: true });
const scenes = [
  { bg: '#9fd3f5', ground: '#5fa85a', x: 40, caption: 'a red robot toy standing on grass under a blue sky' },
  { bg: '#f7e7b4', ground: '#d9b36c', x: 70, caption: 'a red robot toy on a sandy beach' },
  { bg: '#2b2d42', ground: '#55586d', x: 55, caption: 'a red robot toy at night on a grey street' },
  { bg: '#ffffff', ground: '#dddddd', x: 50, caption: undefined },
  { bg: '#ffd6e0', ground: '#b5838d', x: 30, caption: undefined },
  { bg: '#c8e7c1', ground: '#386641', x: 80, caption: undefined },
];

for (const [i, s] of scenes.entries()) {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="128" height="128">
    <rect width="128" height="128" fill="${s.bg}"/><rect y="92" width="128" height="36" fill="${s.ground}"/>
    <rect x="${s.x - 14}" y="50" width="28" height="34" rx="4" fill="#d62828"/>
    <rect x="${s.x - 10}" y="30" width="20" height="18" rx="3" fill="#d62828"/>
    <circle cx="${s.x - 4}" cy="38" r="2.5" fill="#fff"/><circle cx="${s.x + 4}" cy="38" r="2.5" fill="#fff"/>
    <rect x="${s.x - 12}" y="84" width="8" height="10" fill="#6a040f"/><rect x="${s.x + 4}" y="84" width="8" height="10" fill="#6a040f"/>
  </svg>`;
  const name = `robot-${i + 1}`;
  writeFileSync(new URL(`${name}.png`, out), await sharp(Buffer.from(svg)).png().toBuffer());
  if (s.caption) writeFileSync(new URL(`${name}.txt`, out), `${s.caption}\n`);
}
console.log(`wrote ${scenes.length} images to ${out.pathname}`);
