// report: after publish, an HTML page and PNGs next to the LoRA (loras/<name>/<version>/report/):
// loss curve, sample grid, parameters, dataset thumbnails and the run's GPU time and cost. Charts
// are SVG rendered to PNG by sharp; the page repeats every number as text.
import { log } from '@temporalio/activity';
import sharp from 'sharp';
import { z } from 'zod';
import type { DatasetManifest, GpuUsage, LoraMetadata as Metadata } from '../contract/pipeline.js';
import { keyOfUri, METADATA_KEY } from '../lib/keys.js';
import { formatCost } from '../lib/pricing.js';
import { getBytesIfExists, getJson, putBytes, s3Uri } from '../lib/s3.js';
import type { ActivityDeps } from './deps.js';
import { parseInput } from './input.js';

export const ReportInput = z.object({ metadataKey: z.string().regex(METADATA_KEY), manifestKey: z.string().min(1) });

export async function writeReport(deps: ActivityDeps, raw: z.input<typeof ReportInput>): Promise<{ reportUri: string; files: string[] }> {
  const input = parseInput(ReportInput, raw);
  const prefix = input.metadataKey.replace(/metadata\.json$/, 'report');
  const meta = await getJson<Metadata>(deps.storage, input.metadataKey);
  const manifest = await getJson<DatasetManifest>(deps.storage, input.manifestKey);

  const files: Record<string, Buffer> = {};
  files['loss.png'] = await png(lossSvg(meta.metrics.lossCurve));
  const samples = await tiles(deps, meta.samples.map((s) => ({ key: keyOfUri(s.uri), label: `step ${s.step}` })), 256);
  if (samples) files['samples.png'] = samples;
  const thumbs = await tiles(deps, manifest.images.slice(0, 48).map((i) => ({ key: i.key, label: i.source })), 96);
  if (thumbs) files['dataset.png'] = thumbs;
  files['parameters.png'] = await png(tableSvg('Parameters', paramRows(meta)));
  files['cost.png'] = await png(tableSvg('GPU time and cost', costRows(meta.usage, meta.budget)));
  files['index.html'] = Buffer.from(html(meta, Object.keys(files), samples !== undefined, manifest.images.length));

  for (const [name, body] of Object.entries(files)) {
    await putBytes(deps.storage, `${prefix}/${name}`, body, name.endsWith('.html') ? 'text/html; charset=utf-8' : 'image/png');
  }
  const reportUri = s3Uri(deps.storage, `${prefix}/index.html`);
  log.info('report written', { reportUri });
  return { reportUri, files: Object.keys(files).sort() };
}

const png = (svg: string) => sharp(Buffer.from(svg)).png().toBuffer();
const esc = (s: unknown) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function lossSvg(curve: number[], width = 640, height = 320): string {
  const pad = 40;
  const points = curve.length === 1 ? [curve[0]!, curve[0]!] : curve;
  const [lo, hi] = [Math.min(...points), Math.max(...points)];
  const span = hi - lo || 1;
  const xy = points.map((v, i) => `${(pad + (i / (points.length - 1)) * (width - 2 * pad)).toFixed(1)},${(height - pad - ((v - lo) / span) * (height - 2 * pad)).toFixed(1)}`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
<rect width="100%" height="100%" fill="white"/>
<line x1="${pad}" y1="${height - pad}" x2="${width - pad}" y2="${height - pad}" stroke="#888"/>
<line x1="${pad}" y1="${pad}" x2="${pad}" y2="${height - pad}" stroke="#888"/>
<text x="${pad}" y="${pad - 12}" font-family="sans-serif" font-size="14">loss ${hi.toPrecision(3)} … ${lo.toPrecision(3)}</text>
<polyline fill="none" stroke="#2563eb" stroke-width="2" points="${xy.join(' ')}"/>
</svg>`;
}

export function tableSvg(title: string, rows: [string, string][], width = 640): string {
  const line = 24;
  const height = 48 + rows.length * line;
  const text = rows
    .map(([k, v], i) => `<text x="16" y="${60 + i * line}" font-family="sans-serif" font-size="14" fill="#555">${esc(k)}</text><text x="240" y="${60 + i * line}" font-family="monospace" font-size="14">${esc(v)}</text>`)
    .join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="white"/><text x="16" y="28" font-family="sans-serif" font-size="18" font-weight="bold">${esc(title)}</text>\n${text}</svg>`;
}

/** A grid of the images that decode (sample uploads are the worker's; a bad one is left out). */
async function tiles(deps: ActivityDeps, images: { key: string; label: string }[], size: number): Promise<Buffer | undefined> {
  const decoded: Buffer[] = [];
  for (const image of images) {
    const bytes = await getBytesIfExists(deps.storage, image.key);
    const tile = bytes && (await sharp(bytes).resize(size, size, { fit: 'contain', background: '#ffffff' }).png().toBuffer().catch(() => undefined));
    if (tile) decoded.push(tile);
    else log.warn('report: image left out (missing or not decodable)', { key: image.key });
  }
  if (!decoded.length) return undefined;
  const columns = Math.min(decoded.length, size > 128 ? 4 : 8);
  const rows = Math.ceil(decoded.length / columns);
  return sharp({ create: { width: columns * size, height: rows * size, channels: 3, background: '#ffffff' } })
    .composite(decoded.map((input, i) => ({ input, left: (i % columns) * size, top: Math.floor(i / columns) * size })))
    .png()
    .toBuffer();
}

function paramRows(m: Metadata): [string, string][] {
  return [
    ['base model', m.baseModel],
    ['trigger word', m.triggerWord],
    ['format', m.format],
    ...Object.entries(m.params).map(([k, v]): [string, string] => [k, String(v)]),
    ['steps trained', String(m.metrics.steps)],
    ['final loss', m.metrics.finalLoss.toPrecision(4)],
    ['device', m.metrics.device],
  ];
}

export function costRows(u: GpuUsage | undefined, budget?: number): [string, string][] {
  if (!u) return [['GPU time', 'not recorded']];
  // Jobs are priced by the GPU they reported; older metadata has one price for the run.
  const byGpu = new Map(u.jobs.filter((j) => j.gpu && j.pricePerHour !== undefined).map((j) => [j.gpu!, j.pricePerHour]));
  return [
    ['GPU jobs', String(u.jobs.length) + (u.unknownJobs ? ` (${u.unknownJobs} without timing)` : '')],
    ['GPU seconds (billed)', u.gpuSeconds.toFixed(1)],
    ['queue and cold start', `${u.queueSeconds.toFixed(1)} s`],
    ['price per GPU hour', byGpu.size ? [...byGpu].map(([gpu, price]) => `${gpu}: ${price.toFixed(2)}`).join(', ') : u.pricePerHour.toFixed(2)],
    ['cost', formatCost(u.cost)],
    // RunPod bills from worker start to idle scale-down, and earlier attempts of a retried job.
    ['not priced', 'worker start and idle time; earlier attempts of jobs RunPod retried'],
    ...(budget !== undefined ? [['budget', formatCost(budget)] as [string, string]] : []),
  ];
}

function html(m: Metadata, files: string[], samples: boolean, images: number): string {
  const table = (rows: [string, string][]) => `<table>${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</table>`;
  const img = (file: string, alt: string) => (files.includes(file) ? `<img src="${file}" alt="${esc(alt)}">` : '');
  // Which endpoint ran each job, and why the stage moved to it (several endpoints, LORAFLOW_ENDPOINTS).
  const jobs = m.usage?.jobs.map((j) => `<tr><td>${esc(j.gpuJobId)}</td><td>${esc(j.endpointId ?? '')}</td><td>${esc(j.status)}</td><td>${j.delayMs !== undefined ? (j.delayMs / 1000).toFixed(1) : '?'}</td><td>${j.executionMs !== undefined ? (j.executionMs / 1000).toFixed(1) : '?'}</td><td>${esc(j.movedFrom ? `from ${j.movedFrom.from}: ${j.movedFrom.reason}` : '')}</td></tr>`).join('') ?? '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(m.name)} ${esc(m.version)}</title>
<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;padding:0 1em}th{text-align:left;padding-right:2em;color:#555}img{max-width:100%;border:1px solid #ddd}</style></head>
<body>
<h1>${esc(m.name)} <small>${esc(m.version)}</small></h1>
<p>LoRA sha256 <code>${esc(m.lora.sha256)}</code>, ${m.lora.bytes} bytes, trigger word <code>${esc(m.triggerWord)}</code>.</p>
<h2>Loss</h2>${img('loss.png', 'loss curve')}<p>final loss ${m.metrics.finalLoss.toPrecision(4)} after ${m.metrics.steps} steps${m.metrics.stepsPaid !== undefined && m.metrics.stepsPaid !== m.metrics.steps ? ` (${m.metrics.stepsPaid} steps run, redone ones included)` : ''}</p>
<h2>Samples</h2>${samples ? img('samples.png', 'sample grid') : '<p>no sample image could be decoded</p>'}<p>${m.samples.map((s) => `step ${s.step}`).join(', ')}</p>
<h2>Parameters</h2>${table(paramRows(m))}
<h2>Dataset</h2>${img('dataset.png', 'dataset thumbnails')}<p>${images} images (manifest sha256 <code>${esc(m.dataset.manifestSha256)}</code>); captions: ${m.dataset.captions.sidecar} sidecar, ${m.dataset.captions.cached ?? 0} from the caption cache, ${m.dataset.captions.gpuCaptioned} by a GPU job</p>
<h2>GPU time and cost</h2>${table(costRows(m.usage, m.budget))}
${jobs ? `<table><tr><th>GPU job</th><th>endpoint</th><th>status</th><th>waited s</th><th>ran s</th><th>moved</th></tr>${jobs}</table>` : ''}
</body></html>
`;
}
