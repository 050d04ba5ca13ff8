// report: after publish, an HTML page and PNGs next to the LoRA (loras/<name>/<version>/report/):
// loss chart (raw and smoothed, segment ends and lost workers marked), the samples as a grid of
// prompts × steps (to see where it starts to overfit), parameters, dataset thumbnails and the run's
// GPU time and cost. Charts are SVG rendered to PNG by sharp; the page repeats every number as text.
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
  files['loss.png'] = await png(lossSvg(meta.metrics.lossCurve, { steps: meta.metrics.steps, events: meta.metrics.events ?? [] }));
  const prompts = meta.prompts ?? [meta.triggerWord];
  const samples = await sampleGrid(deps, prompts, meta.samples, new Set((meta.savedSteps ?? []).map((s) => s.step)));
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

/** TensorBoard's smoothing: an exponential moving average, debiased so the start is not pulled to 0. */
export function smooth(values: number[], weight = 0.8): number[] {
  let ema = 0;
  return values.map((v, i) => {
    ema = ema * weight + (1 - weight) * v;
    return ema / (1 - weight ** (i + 1));
  });
}

/** The step of each point of a loss curve downsampled evenly from `steps` points, first and last kept. */
export function curveSteps(points: number, steps: number): number[] {
  if (points <= 1 || steps <= 1) return Array.from({ length: points }, () => Math.max(steps, 1));
  return Array.from({ length: points }, (_, i) => Math.round((i * (steps - 1)) / (points - 1)) + 1);
}

type ChartEvent = { step: number; kind: 'segment-end' | 'resumed-after-loss' };

/** A vertical mark per event: dashed grey where a segment ended, red where a worker was lost and
 * the training resumed from its checkpoint at that step (the steps after it were redone). */
export function chartMarks(events: ChartEvent[]): { step: number; label: string; color: string; dash: string }[] {
  return events.map((e) => (e.kind === 'segment-end' ? { step: e.step, label: `segment end ${e.step}`, color: '#6b7280', dash: '6,4' } : { step: e.step, label: `worker lost, resumed ${e.step}`, color: '#dc2626', dash: '2,3' }));
}

/** Round numbers for an axis from lo to hi, about `count` of them. */
function ticks(lo: number, hi: number, count = 5): number[] {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((m) => m >= raw)!;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

export function lossSvg(curve: number[], opts: { steps?: number; events?: ChartEvent[] } = {}, width = 640, height = 320): string {
  const [left, right, top, bottom] = [64, 16, 32, 48];
  const steps = opts.steps ?? curve.length;
  const xs = curveSteps(curve.length, steps);
  const smoothed = smooth(curve);
  const [lo, hi] = [Math.min(...curve), Math.max(...curve)];
  const [x0, x1] = [Math.min(xs[0] ?? 1, 1), Math.max(steps, 2)];
  const x = (step: number) => left + ((step - x0) / (x1 - x0 || 1)) * (width - left - right);
  const y = (v: number) => height - bottom - ((v - lo) / (hi - lo || 1)) * (height - top - bottom);
  const text = (tx: number, ty: number, body: string, extra = '', size = 12) => `<text x="${tx.toFixed(1)}" y="${ty.toFixed(1)}" font-family="sans-serif" font-size="${size}" ${extra}>${esc(body)}</text>`;
  const line = (values: number[]) => values.map((v, i) => `${x(xs[i]!).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  const xTicks = ticks(x0, x1).filter((t) => Number.isInteger(t));
  const yTicks = ticks(lo, hi, 4);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
<rect width="100%" height="100%" fill="white"/>
<line x1="${left}" y1="${height - bottom}" x2="${width - right}" y2="${height - bottom}" stroke="#888"/>
<line x1="${left}" y1="${top}" x2="${left}" y2="${height - bottom}" stroke="#888"/>
${xTicks.map((t) => `<line x1="${x(t).toFixed(1)}" y1="${height - bottom}" x2="${x(t).toFixed(1)}" y2="${height - bottom + 4}" stroke="#888"/>${text(x(t), height - bottom + 18, String(t), 'text-anchor="middle"')}`).join('\n')}
${yTicks.map((t) => `<line x1="${left - 4}" y1="${y(t).toFixed(1)}" x2="${left}" y2="${y(t).toFixed(1)}" stroke="#888"/>${text(left - 6, y(t) + 4, t.toPrecision(3), 'text-anchor="end"')}`).join('\n')}
${text((left + width - right) / 2, height - 8, 'step', 'text-anchor="middle"')}
${text(14, (top + height - bottom) / 2, 'loss', `text-anchor="middle" transform="rotate(-90 14 ${(top + height - bottom) / 2})"`)}
${chartMarks(opts.events ?? []).map((m, i) => `<line x1="${x(m.step).toFixed(1)}" y1="${top}" x2="${x(m.step).toFixed(1)}" y2="${height - bottom}" stroke="${m.color}" stroke-dasharray="${m.dash}"/>${text(x(m.step) + 3, top + 12 + (i % 3) * 13, m.label, `fill="${m.color}"`)}`).join('\n')}
<polyline fill="none" stroke="#93c5fd" stroke-width="1" points="${line(curve.length === 1 ? [curve[0]!] : curve)}"/>
${curve.length === 1 ? `<circle cx="${x(xs[0]!).toFixed(1)}" cy="${y(curve[0]!).toFixed(1)}" r="3" fill="#2563eb"/>` : ''}
<polyline fill="none" stroke="#2563eb" stroke-width="2" points="${line(smoothed)}"/>
${text(left, top - 12, `loss ${hi.toPrecision(3)} … ${lo.toPrecision(3)}: raw (light) and smoothed`, '', 14)}
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

/** Rows are prompts, columns steps: one prompt's column of images shows where it starts to overfit.
 * Steps with a kept LoRA (lora-step<N>.safetensors) are starred. A missing image is a blank cell. */
async function sampleGrid(deps: ActivityDeps, prompts: string[], samples: Metadata['samples'], saved: Set<number>, size = 160): Promise<Buffer | undefined> {
  const steps = [...new Set(samples.map((s) => s.step))].sort((a, b) => a - b);
  const [labelWidth, header] = [200, 28];
  const cells = [];
  for (const sample of samples) {
    const bytes = await getBytesIfExists(deps.storage, keyOfUri(sample.uri));
    const tile = bytes && (await sharp(bytes).resize(size, size, { fit: 'contain', background: '#ffffff' }).png().toBuffer().catch(() => undefined));
    if (tile) cells.push({ input: tile, left: labelWidth + steps.indexOf(sample.step) * size, top: header + (sample.prompt ?? 0) * size });
    else log.warn('report: image left out (missing or not decodable)', { key: keyOfUri(sample.uri) });
  }
  if (!cells.length) return undefined;
  const width = labelWidth + steps.length * size;
  const height = header + prompts.length * size;
  const clip = (p: string) => (p.length > 28 ? `${p.slice(0, 27)}…` : p);
  const labels = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
${steps.map((st, i) => `<text x="${labelWidth + i * size + size / 2}" y="19" text-anchor="middle" font-family="sans-serif" font-size="14">step ${st}${saved.has(st) ? ' *' : ''}</text>`).join('')}
${prompts.map((p, i) => `<text x="8" y="${header + i * size + size / 2}" font-family="sans-serif" font-size="13">${esc(clip(p))}</text>`).join('')}
</svg>`;
  return sharp({ create: { width, height, channels: 3, background: '#ffffff' } })
    .composite([{ input: Buffer.from(labels), left: 0, top: 0 }, ...cells])
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

/** The kept LoRAs of the run and how to make one of them the version's LoRA. */
function stepsSection(m: Metadata): string {
  if (!m.savedSteps?.length && !m.promoted) return '';
  const final = m.promoted?.final ?? { step: m.metrics.steps, sha256: m.lora.sha256 };
  const rows = [...(m.savedSteps ?? []), ...(m.promoted ? [] : [{ step: final.step, sha256: final.sha256, uri: 'lora.safetensors (final)' }])]
    .map((s) => `<tr><td>${s.step}${s.step === (m.promoted?.step ?? final.step) ? ' (this version\'s LoRA)' : ''}</td><td><code>${esc(s.uri.replace(/^.*\//, ''))}</code></td><td><code>${esc(s.sha256.slice(0, 16))}</code></td></tr>`)
    .join('');
  return `<h2>Kept steps</h2><p>Steps marked * in the grid have a LoRA. <code>loraflow promote ${esc(m.name)}@${esc(m.version)} --step N</code> makes one of them this version's LoRA (and latest).</p><table><tr><th>step</th><th>file</th><th>sha256</th></tr>${rows}</table>`;
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
<h2>Samples</h2>${samples ? img('samples.png', 'samples: prompts (rows) by step (columns)') : '<p>no sample image could be decoded</p>'}<p>${[...new Set(m.samples.map((s) => s.step))].map((st) => `step ${st}`).join(', ')}; prompts: ${(m.prompts ?? [m.triggerWord]).map((p) => `<code>${esc(p)}</code>`).join(', ')}</p>
${stepsSection(m)}
<h2>Parameters</h2>${table(paramRows(m))}
<h2>Dataset</h2>${img('dataset.png', 'dataset thumbnails')}<p>${images} images (manifest sha256 <code>${esc(m.dataset.manifestSha256)}</code>); captions: ${m.dataset.captions.sidecar} sidecar, ${m.dataset.captions.cached ?? 0} from the caption cache, ${m.dataset.captions.gpuCaptioned} by a GPU job</p>
<h2>GPU time and cost</h2>${table(costRows(m.usage, m.budget))}
${jobs ? `<table><tr><th>GPU job</th><th>endpoint</th><th>status</th><th>waited s</th><th>ran s</th><th>moved</th></tr>${jobs}</table>` : ''}
</body></html>
`;
}
