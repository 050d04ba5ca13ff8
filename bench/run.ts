// `make bench`: runs the benchmarks, writes bench/results/<name>.json and bench/results/SUMMARY.md.
// Benchmarks report; they do not assert. Every figure is set against a baseline measured in the
// same run. Options:
//   --quick              smaller sizes (a few minutes); also BENCH_QUICK=1
//   --only a,b           run some of: overhead, latency, polling, scale, ingest, gpu, fixedOverhead, cost (derived from gpu.json;
//                        scale runs as worker.ts is configured (jobs ending unannounced, with and without completion
//                        webhooks, and trainings reporting an ETA), with a long-poll per stage, and with an activity slot per pipeline;
//                        BENCH_SCALE_LARGE_N adds another at that N; polling's steps, e.g. pollingWebhook,
//                        also run one by one)
//   --compare DIR        add an "after" column from the result files of another run (a patched copy)
//   --compare-label TEXT what that other run changed
import os from 'node:os';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { benchFixedOverhead } from './fixed-overhead.js';
import { benchGpu, costOf } from './gpu.js';
import { benchIngest } from './ingest.js';
import { resultsDir, writeResult } from './lib.js';
import { benchLatency, benchOverhead } from './pipelines.js';
import { benchScale } from './scale.js';
import { benchStatusPolling } from './status-polling.js';
import { summarize } from './summary.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: process.env.BENCH_QUICK === '1' },
    only: { type: 'string' },
    compare: { type: 'string' },
    'compare-label': { type: 'string' },
  },
});
const quick = values.quick!;
const only = new Set((values.only ?? 'overhead,latency,scale,ingest,gpu,fixedOverhead').split(',').map((s) => s.trim()));
const started = Date.now();
const log = (msg: string) => console.log(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s] ${msg}`);
const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);

const sizes = {
  overheadN: env('BENCH_OVERHEAD_N', quick ? 5 : 20),
  latencyN: env('BENCH_LATENCY_N', quick ? 20 : 60),
  latencyJobSeconds: [env('BENCH_LATENCY_MIN_S', quick ? 5 : 10), env('BENCH_LATENCY_MAX_S', quick ? 15 : 40)] as [number, number],
  scaleN: env('BENCH_SCALE_N', quick ? 200 : 1000),
  scaleWindowSeconds: env('BENCH_SCALE_WINDOW_S', quick ? 15 : 30),
  /** The second scale run: activity slots for every pipeline (0 skips it). */
  scaleSlots: env('BENCH_SCALE_SLOTS', env('BENCH_SCALE_N', quick ? 200 : 1000) + 50),
  /** The polling path alone (bench/status-polling.ts): N waiting jobs, baseline and shared poller, and a larger N with the poller. */
  pollingN: env('BENCH_POLLING_N', quick ? 500 : 1000),
  pollingLargeN: env('BENCH_POLLING_LARGE_N', quick ? 2000 : 10_000),
  pollingWindowSeconds: env('BENCH_POLLING_WINDOW_S', quick ? 15 : 30),
  /** The scale baseline at scaleN: a long-poll per waiting stage, no shared poller (0 skips it). */
  scaleBaseline: env('BENCH_SCALE_BASELINE', 1),
  /** Jobs finished during each scale window (completion noticed). */
  scaleFinish: env('BENCH_SCALE_FINISH', quick ? 20 : 40),
  /** The scale run at scaleN with trainings that report an ETA, as the real trainer does (0 skips it). */
  scaleEta: env('BENCH_SCALE_ETA', 1),
  /** The scale run again with the worker's completion webhook (unannounced ends, seen at once). */
  scaleWebhook: env('BENCH_SCALE_WEBHOOK', 1),
  /** Another scale run at this N, a slot per pipeline (0, the default, skips it): the largest the machine fits. */
  scaleLargeN: env('BENCH_SCALE_LARGE_N', 0),
  /** A third scale run, with a slot per pipeline and this maxCachedWorkflows (0, the default, skips it). */
  scaleCache: env('BENCH_SCALE_CACHE', 0),
  ingestImages: env('BENCH_INGEST_IMAGES', quick ? 100 : 1000),
  gpuJobs: env('BENCH_GPU_JOBS', quick ? 2 : 3),
  gpuSteps: env('BENCH_GPU_STEPS', quick ? 10 : 20),
  gpuPricePerHour: env('BENCH_GPU_PRICE_PER_HOUR', 5.49),
  fixedSteps: env('BENCH_FIXED_STEPS', quick ? 40 : 150),
  fixedImages: env('BENCH_FIXED_IMAGES', quick ? 8 : 24),
};

const machine = { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, platform: `${os.platform()} ${os.release()}` };
log(`sizes ${JSON.stringify(sizes)}; machine ${JSON.stringify(machine)}`);

const results: Record<string, unknown> = {};
const step = async (name: string, fn: () => Promise<unknown>) => {
  if (!only.has(name)) return;
  log(`${name}: start`);
  try {
    const result = { at: new Date().toISOString(), quick, machine, ...(await fn() as object) };
    results[name] = result;
    log(`${name}: ${JSON.stringify(result)}`);
    log(`${name}: wrote ${writeResult(name, result)}`);
  } catch (err) {
    log(`${name}: FAILED ${err instanceof Error ? err.stack : String(err)}`);
    results[name] = { error: err instanceof Error ? err.message : String(err) };
    writeResult(name, results[name]);
  }
};

await step('overhead', () => benchOverhead({ n: sizes.overheadN, log }));
await step('latency', () => benchLatency({ n: sizes.latencyN, jobSeconds: sizes.latencyJobSeconds, log }));
await step('ingest', () => benchIngest({ images: sizes.ingestImages, log }));
await step('gpu', () => benchGpu({ jobs: sizes.gpuJobs, steps: sizes.gpuSteps, log }));
await step('fixedOverhead', () => benchFixedOverhead({ steps: sizes.fixedSteps, images: sizes.fixedImages, log }));
// Cost is derived from the GPU figures: this run's, or (with --only cost) the last gpu.json.
if (only.has('gpu')) only.add('cost');
const gpuFile = path.join(resultsDir, 'gpu.json');
const gpu = (results.gpu ?? (only.has('cost') && existsSync(gpuFile) ? JSON.parse(readFileSync(gpuFile, 'utf8')) : undefined)) as
  | Awaited<ReturnType<typeof benchGpu>>
  | { error: string }
  | undefined;
if (gpu && !('error' in gpu)) await step('cost', async () => costOf(gpu, sizes.gpuPricePerHour));
// `--only polling` runs every polling step; `--only pollingWebhook` (any step's name) that one alone.
const pollingSteps = ['pollingBaseline', 'pollingShared', 'pollingLarge', 'pollingTrainings', 'pollingTrainingsLarge', 'pollingNoEta', 'pollingWebhook', 'pollingWebhookLarge'];
if (only.has('polling')) for (const name of pollingSteps) only.add(name);
if (pollingSteps.some((name) => only.has(name))) {
  const w = { windowSeconds: sizes.pollingWindowSeconds, finish: 40, log };
  await step('pollingBaseline', () => benchStatusPolling({ n: sizes.pollingN, perStage: true, ...w }));
  await step('pollingShared', () => benchStatusPolling({ n: sizes.pollingN, ...w }));
  await step('pollingLarge', () => benchStatusPolling({ n: sizes.pollingLargeN, ...w }));
  // The same sizes as running trainings that report an ETA (what the poller ranks by).
  await step('pollingTrainings', () => benchStatusPolling({ n: sizes.pollingN, trainings: true, ...w }));
  await step('pollingTrainingsLarge', () => benchStatusPolling({ n: sizes.pollingLargeN, trainings: true, ...w }));
  // Trainings that report no ETA end unannounced: polling alone, then with completion webhooks.
  await step('pollingNoEta', () => benchStatusPolling({ n: sizes.pollingN, trainings: true, noEta: true, ...w }));
  await step('pollingWebhook', () => benchStatusPolling({ n: sizes.pollingN, trainings: true, noEta: true, webhook: true, ...w }));
  await step('pollingWebhookLarge', () => benchStatusPolling({ n: sizes.pollingLargeN, trainings: true, noEta: true, webhook: true, ...w }));
}
await step('scale', () => benchScale({ n: sizes.scaleN, windowSeconds: sizes.scaleWindowSeconds, finish: sizes.scaleFinish, log }));
if (sizes.scaleEta > 0 && only.has('scale')) {
  only.add('scaleEta');
  await step('scaleEta', () => benchScale({ n: sizes.scaleN, windowSeconds: sizes.scaleWindowSeconds, finish: sizes.scaleFinish, eta: true, log }));
}
// With `--only scale`, or alone with `--only scaleWebhook`.
if (sizes.scaleWebhook > 0 && only.has('scale')) only.add('scaleWebhook');
await step('scaleWebhook', () => benchScale({ n: sizes.scaleN, windowSeconds: sizes.scaleWindowSeconds, finish: sizes.scaleFinish, webhook: true, log }));
if (sizes.scaleBaseline > 0 && only.has('scale')) {
  only.add('scaleBaseline');
  await step('scaleBaseline', () => benchScale({ n: sizes.scaleN, windowSeconds: sizes.scaleWindowSeconds, finish: sizes.scaleFinish, perStage: true, log }));
}
if (sizes.scaleSlots > 0 && only.has('scale')) {
  only.add('scaleSlots');
  await step('scaleSlots', () => benchScale({ n: sizes.scaleN, windowSeconds: sizes.scaleWindowSeconds, maxActivities: sizes.scaleSlots, finish: sizes.scaleFinish, log }));
}
// With `--only scale`, or alone with `--only scaleLarge`; either way only where BENCH_SCALE_LARGE_N is set.
if (sizes.scaleLargeN > 0 && only.has('scale')) only.add('scaleLarge');
if (sizes.scaleLargeN > 0) {
  await step('scaleLarge', () => benchScale({ n: sizes.scaleLargeN, windowSeconds: sizes.scaleWindowSeconds, maxActivities: sizes.scaleLargeN + 50, finish: sizes.scaleFinish, webhook: sizes.scaleWebhook > 0, log }));
}
if (sizes.scaleSlots > 0 && sizes.scaleCache > 0 && only.has('scale')) {
  only.add('scaleCache');
  await step('scaleCache', () =>
    benchScale({ n: sizes.scaleN, windowSeconds: sizes.scaleWindowSeconds, maxActivities: sizes.scaleSlots, maxCachedWorkflows: sizes.scaleCache, log }),
  );
}

// The summary covers every result file present (a partial run keeps the others' last figures).
const load = (dir: string) =>
  Object.fromEntries(
    ['overhead', 'latency', 'pollingBaseline', 'pollingShared', 'pollingLarge', 'pollingTrainings', 'pollingTrainingsLarge', 'pollingNoEta', 'pollingWebhook', 'pollingWebhookLarge', 'scale', 'scaleEta', 'scaleWebhook', 'scaleBaseline', 'scaleSlots', 'scaleCache', 'scaleLarge', 'ingest', 'gpu', 'fixedOverhead', 'cost']
      .map((n) => [n, path.join(dir, `${n}.json`)] as const)
      .filter(([, f]) => existsSync(f))
      .map(([n, f]) => [n, JSON.parse(readFileSync(f, 'utf8')) as unknown]),
  );
// The run's own facts go with its results, so a summary written later (--only none) tells them.
const ran = Object.keys(results).length > 0;
const runFile = path.join(resultsDir, 'run.json');
const meta = ran
  ? { at: new Date(started).toISOString(), quick, sizes, machine, seconds: (Date.now() - started) / 1000, ran: Object.keys(results) }
  : existsSync(runFile)
    ? (JSON.parse(readFileSync(runFile, 'utf8')) as { at: string; quick: boolean; sizes: object; machine: object; seconds: number })
    : { at: new Date(started).toISOString(), quick, sizes, machine, seconds: 0 };
if (ran) writeResult('run', meta);
const compare = values.compare ? { label: values['compare-label'] ?? values.compare, results: load(values.compare) } : undefined;
const summary = summarize(load(resultsDir), { ...meta, compare });
writeFileSync(path.join(resultsDir, 'SUMMARY.md'), summary);
log(`wrote ${path.join(resultsDir, 'SUMMARY.md')} in ${((Date.now() - started) / 60_000).toFixed(1)} min`);
process.exit(0);
