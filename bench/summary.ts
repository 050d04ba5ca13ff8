// bench/results/SUMMARY.md from the result files: one row per figure, its same-run baseline and
// the issue's target. Targets are reported, never asserted.
/* eslint-disable @typescript-eslint/no-explicit-any */
type Results = Record<string, any>;

interface Row {
  item: string;
  figure: string;
  value: (r: Results) => string | undefined;
  baseline?: (r: Results) => string | undefined;
  target?: string;
  /** Shown only when this result exists (in this run or the compared one). */
  needs?: string;
  /** true/false when the value can be set against the target. */
  meets?: (r: Results) => boolean | undefined;
}

const n = (v: unknown, digits = 2) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : undefined);
const ok = (r: Results, name: string) => r[name] && !r[name].error;

function scaleRows(key: string, label: string): Row[] {
  return [
  {
    needs: key,
    item: `3 Scale (${label})`,
    figure: 'pipelines parked in train with a GPU job submitted',
    value: (r) => ok(r, key) && `${r[key].heldInTrain} of ${r[key].n}`,
    baseline: (r) => ok(r, key) && `activity slots: ${r[key].maxConcurrentActivityTaskExecutions}; workflow cache: ${r[key].maxCachedWorkflows ?? 'default'}`,
    target: `all`,
    meets: (r) => ok(r, key) && r[key].heldInTrain >= r[key].n,
  },
  {
    needs: key,
    item: `3 Scale (${label})`,
    figure: 'Temporal worker RSS peak (MiB) / CPU (cores)',
    value: (r) => ok(r, key) && `${n(r[key].worker.rssPeakMiB, 0)} / ${n(r[key].worker.cpuCores)}`,
    baseline: (r) => ok(r, key) && `idle worker ${n(r[key].worker.idleRssMiB, 0)} MiB`,
    target: '≤ 1024 MiB',
    meets: (r) => ok(r, key) && r[key].worker.rssPeakMiB <= 1024,
  },
  {
    needs: key,
    item: `3 Scale (${label})`,
    figure: 'Temporal server RSS peak (MiB) / CPU (cores)',
    value: (r) => ok(r, key) && `${n(r[key].temporalServer.rssPeakMiB, 0)} / ${n(r[key].temporalServer.cpuCores)}`,
    baseline: (r) => ok(r, key) && `idle server ${n(r[key].temporalServer.idleRssMiB, 0)} MiB`,
  },
  {
    needs: key,
    item: `3 Scale (${label})`,
    figure: 'RunPod calls per second (of which answered 429)',
    value: (r) => ok(r, key) && `${n(r[key].runpodCallsPerSecond, 1)} (${n(r[key].throttled429PerSecond, 1)})`,
    baseline: (r) => ok(r, key) && `RunPod's /status limit ${r[key].runpodStatusLimitPerSecond}/s per endpoint`,
  },
  {
    needs: key,
    item: `3 Scale (${label})`,
    figure: 'status requests per endpoint (runpod-local): most at once / most in 1 s / most in 10 s',
    value: (r) => ok(r, key) && r[key].statusLimits && `${r[key].statusLimits.maxInFlight} / ${r[key].statusLimits.maxPerSecond} / ${r[key].statusLimits.maxPerWindow}`,
    baseline: (r) => ok(r, key) && r[key].statusLimits && `RunPod's limits ${r[key].statusLimits.limitConcurrent} at once, ${r[key].statusLimits.limitPerWindow} per 10 s (200/s); poller budget ${r[key].pollers?.[0] ? `${r[key].pollers[0].concurrent} at once, ${r[key].pollers[0].perSecond}/s` : 'none'}`,
    target: '≤ 400 / ≤ 200 / ≤ 2000',
    meets: (r) => ok(r, key) && r[key].statusLimits && r[key].statusLimits.maxInFlight <= 400 && r[key].statusLimits.maxPerSecond <= 200 && r[key].statusLimits.maxPerWindow <= 2000,
  },
  {
    needs: key,
    item: `3 Scale (${label})`,
    figure: 'status requests answered 429 in the window (rate / concurrency)',
    value: (r) => ok(r, key) && r[key].statusLimits && `${r[key].statusLimits.refusedRate} / ${r[key].statusLimits.refusedConcurrency}`,
    baseline: (r) => ok(r, key) && r[key].statusLimits && `of ${r[key].statusLimits.admitted + r[key].statusLimits.refusedRate + r[key].statusLimits.refusedConcurrency} status requests`,
    target: '0',
    meets: (r) => ok(r, key) && r[key].statusLimits && r[key].statusLimits.refusedRate + r[key].statusLimits.refusedConcurrency === 0,
  },
  {
    needs: key,
    item: `3 Scale (${label})`,
    figure: 'job finished → pipeline noticed (publish starts), p50 / max (s)',
    value: (r) => ok(r, key) && r[key].completionNoticedSeconds && `${n(r[key].completionNoticedSeconds.p50)} / ${n(r[key].completionNoticedSeconds.max)}`,
    baseline: (r) => ok(r, key) && r[key].finished && `endpoint's finishedAt of ${r[key].finished.noticed} of ${r[key].finished.chosen} jobs finished during the window while the rest waited`,
    target: 'p50 ≤ 1 s',
    meets: (r) => ok(r, key) && r[key].completionNoticedSeconds && r[key].completionNoticedSeconds.p50 <= 1,
  },
  {
    needs: key,
    item: `3 Scale (${label})`,
    figure: 'RSS per parked pipeline (MiB): worker / all processes; worker RSS at 10,000 (MiB)',
    value: (r) => ok(r, key) && r[key].extrapolated && `${n(r[key].extrapolated.workerMiBPerPipeline, 3)} / ${n(r[key].extrapolated.allProcessesMiBPerPipeline, 3)}; ${r[key].extrapolated.workerRssAt10000MiB}`,
    baseline: (r) => ok(r, key) && r[key].extrapolated && `idle worker; the 1 GiB target holds ${r[key].extrapolated.workerWithin1GiB} pipelines; ${r[key].extrapolated.machineFreeMiBAfter} MiB free after, room for ${r[key].extrapolated.machineHoldsMore} more`,
    target: '≤ 1024 MiB',
    meets: (r) => ok(r, key) && r[key].extrapolated && r[key].extrapolated.workerRssAt10000MiB <= 1024,
  },
  ];
}

function pollingRows(key: string, label: string): Row[] {
  const lim = (r: Results) => ok(r, key) && r[key].statusLimits;
  return [
    {
      needs: key,
      item: `3 Status polling (${label})`,
      figure: 'status requests per endpoint: most at once / most in 1 s / most in 10 s; 429s (rate / concurrency)',
      value: (r) => lim(r) && `${r[key].statusLimits.maxInFlight} / ${r[key].statusLimits.maxPerSecond} / ${r[key].statusLimits.maxPerWindow}; ${r[key].statusLimits.refusedRate} / ${r[key].statusLimits.refusedConcurrency}`,
      baseline: (r) => lim(r) && `RunPod's limits 400 at once, 2000 per 10 s (200/s), runpod-local's counts over ${r[key].windowSeconds} s, ${r[key].n} jobs waiting`,
      target: '≤ 400 / ≤ 200 / ≤ 2000; 0 / 0',
      meets: (r) => lim(r) && r[key].statusLimits.maxInFlight <= 400 && r[key].statusLimits.maxPerSecond <= 200 && r[key].statusLimits.refusedRate + r[key].statusLimits.refusedConcurrency === 0,
    },
    {
      needs: key,
      item: `3 Status polling (${label})`,
      figure: 'job final → its waiter noticed, p50 / max (s)',
      value: (r) => ok(r, key) && `${n(r[key].completionNoticedSeconds.p50)} / ${n(r[key].completionNoticedSeconds.max)}`,
      baseline: (r) => ok(r, key) && `the ${r[key].jobs?.startsWith('running') ? 'COMPLETED' : 'cancel'}'s time, ${r[key].finished.noticed} of ${r[key].finished.chosen} jobs ended during the window`,
      target: 'p50 ≤ 1 s',
      meets: (r) => ok(r, key) && r[key].completionNoticedSeconds.p50 <= 1,
    },
  ];
}

const rows: Row[] = [
  {
    item: '1 Overhead',
    figure: 'extra s per pipeline (4 stages, 2 GPU jobs), mean / p50',
    value: (r) => ok(r, 'overhead') && `${n(r.overhead.extraSecondsPerPipeline.mean)} / ${n(r.overhead.extraSecondsPerPipeline.p50)}`,
    baseline: (r) => ok(r, 'overhead') && `pipeline ${n(r.overhead.pipelineSeconds.mean)} s − direct /run ${n(r.overhead.directSeconds.mean)} s (n=${r.overhead.n})`,
    target: '≤ 1.5 s',
    meets: (r) => ok(r, 'overhead') && r.overhead.extraSecondsPerPipeline.mean <= 1.5,
  },
  {
    item: '2 Completion latency',
    figure: 'COMPLETED → workflow leaves train, p50 / p99 (s)',
    value: (r) => ok(r, 'latency') && `${n(r.latency.completionLatencySeconds.p50)} / ${n(r.latency.completionLatencySeconds.p99)}`,
    baseline: (r) => ok(r, 'latency') && `endpoint's COMPLETED time (n=${r.latency.samples}, jobs ${r.latency.jobSeconds.join('–')} s)`,
    target: 'p50 ≤ 0.5 s',
    meets: (r) => ok(r, 'latency') && r.latency.completionLatencySeconds.p50 <= 0.5,
  },
  {
    item: '2 Completion latency',
    figure: 'RunPod status calls per job-minute',
    value: (r) => ok(r, 'latency') && n(r.latency.statusCallsPerJobMinute, 1),
    baseline: (r) => ok(r, 'latency') && `${r.latency.statusCalls} calls over ${n(r.latency.jobMinutes, 1)} job-minutes`,
    target: '≤ 6',
    meets: (r) => ok(r, 'latency') && r.latency.statusCallsPerJobMinute <= 6,
  },
  ...pollingRows('pollingBaseline', 'baseline: a long-poll per waiter'),
  ...pollingRows('pollingShared', 'shared poller'),
  ...pollingRows('pollingLarge', 'shared poller, the large N'),
  ...pollingRows('pollingTrainings', 'shared poller, running trainings with an ETA'),
  ...pollingRows('pollingTrainingsLarge', 'shared poller, running trainings with an ETA, the large N'),
  ...pollingRows('pollingNoEta', 'shared poller, running trainings without an ETA'),
  ...pollingRows('pollingWebhook', 'shared poller and completion webhooks, running trainings without an ETA'),
  ...pollingRows('pollingWebhookLarge', 'shared poller and completion webhooks, running trainings without an ETA, the large N'),
  ...scaleRows('scale', 'as worker.ts'),
  ...scaleRows('scaleEta', 'as worker.ts, trainings reporting an ETA'),
  ...scaleRows('scaleWebhook', 'as worker.ts with completion webhooks, jobs ending unannounced'),
  ...scaleRows('scaleBaseline', 'baseline: a long-poll per stage'),
  ...scaleRows('scaleSlots', 'slot per pipeline'),
  ...scaleRows('scaleCache', 'slot per pipeline, small workflow cache'),
  ...scaleRows('scaleLarge', 'the largest N tried, with completion webhooks unless BENCH_SCALE_WEBHOOK=0'),
  {
    item: '4 Ingest',
    figure: 'ingest MB/s ÷ raw S3 PUT MB/s (same bytes)',
    value: (r) => ok(r, 'ingest') && `${n(r.ingest.ingestVsRawPutSequential, 3)} sequential, ${n(r.ingest.ingestVsRawPutParallel8, 3)} vs 8 in flight`,
    baseline: (r) =>
      ok(r, 'ingest') &&
      `ingest ${n(r.ingest.ingestMBps)} MB/s; raw PUT ${n(r.ingest.rawPutSequential.MBps)} / ${n(r.ingest.rawPutParallel8.MBps)} MB/s (${r.ingest.images} × ~${n(r.ingest.inputMB / r.ingest.images)} MB ${r.ingest.imageSize ?? 'JPEG'})`,
    target: '≥ 0.5',
    meets: (r) => ok(r, 'ingest') && r.ingest.ingestVsRawPutSequential >= 0.5,
  },
  {
    item: '4 Ingest',
    figure: 'bytes stored per input byte',
    value: (r) => ok(r, 'ingest') && n(r.ingest.stored?.bytesPerInputByte, 3),
    baseline: (r) => ok(r, 'ingest') && r.ingest.stored && `${n(r.ingest.stored.bytes / 1e6, 0)} MB stored (${r.ingest.stored.formats.join(', ')}) for ${n(r.ingest.inputMB, 0)} MB of JPEGs in`,
    target: '≤ 1.1',
    meets: (r) => ok(r, 'ingest') && r.ingest.stored && r.ingest.stored.bytesPerInputByte <= 1.1,
  },
  {
    item: '4 Ingest',
    figure: 'validation s per 1,000 images (header, strip, decode-validate; no S3)',
    value: (r) => ok(r, 'ingest') && r.ingest.validation.seconds !== undefined && n((r.ingest.validation.seconds * 1000) / r.ingest.validation.images, 1),
    baseline: (r) =>
      ok(r, 'ingest') &&
      r.ingest.validation.seconds !== undefined &&
      `${n(r.ingest.validation.vsFullDecode, 2)}× a full decode (${n(r.ingest.validation.fullDecodeMsPerImage, 0)} ms/image); the PNG re-encode ingest did before: ${n(r.ingest.validation.pngReencodeMsPerImage, 0)} ms/image; ${n(r.ingest.validation.shareOfIngest * 100, 0)}% of ingest time`,
    target: '≤ 10 s',
    meets: (r) => ok(r, 'ingest') && r.ingest.validation.seconds !== undefined && (r.ingest.validation.seconds * 1000) / r.ingest.validation.images <= 10,
  },
  {
    item: '5 GPU efficiency',
    figure: 'training s ÷ billed s per job: warm / cold',
    value: (r) => ok(r, 'gpu') && `${n(r.gpu.warm?.trainingShareOfBilled, 3) ?? '–'} / ${n(r.gpu.cold.trainingShareOfBilled, 3)}`,
    baseline: (r) =>
      ok(r, 'gpu') &&
      `billed ${n(r.gpu.warm?.billedSeconds) ?? '–'} s warm, ${n(r.gpu.cold.billedSeconds)} s cold (worker start ${n(r.gpu.coldStartSeconds)} s, then ${n(r.gpu.cold.unattributedSeconds, 1)} s of the first job outside the worker's phase timers); ${r.gpu.steps} steps, tiny model, CPU`,
  },
  {
    item: '5 GPU efficiency',
    figure: 'it/s and peak VRAM vs diffusers reference script',
    value: () => 'not measured',
    baseline: () => 'needs a lent GPU machine; none was lent to this run',
    target: '≥ 1.0× it/s, ≤ 1.0× VRAM',
  },
  ...(['laterSegment', 'retrain', 'firstSegment'] as const).map(
    (scenario): Row => ({
      item: '5 Fixed overhead',
      figure: `billed s outside training ÷ billed s: ${{ firstSegment: 'first segment', laterSegment: 'a later segment', retrain: 'a retrain on the same images' }[scenario]}`,
      needs: 'fixedOverhead',
      value: (r) => ok(r, 'fixedOverhead') && `${n(r.fixedOverhead.after[scenario].overheadShare * 100, 1)}% (${n(r.fixedOverhead.after[scenario].billedSeconds)} s billed)`,
      baseline: (r) =>
        ok(r, 'fixedOverhead') &&
        `${n(r.fixedOverhead.before[scenario].overheadShare * 100, 1)}% (${n(r.fixedOverhead.before[scenario].billedSeconds)} s) with no warm denoiser and no encoding cache: ${n(r.fixedOverhead.ratio[scenario])}×; ${r.fixedOverhead.steps} steps, ${r.fixedOverhead.images} images, tiny FLUX on CPU`,
      ...(scenario === 'firstSegment' ? {} : { target: '≤ 5%', meets: (r: Results) => (ok(r, 'fixedOverhead') ? r.fixedOverhead.after[scenario].overheadShare <= 0.05 : undefined) }),
    }),
  ),
  {
    item: '6 Cost',
    figure: 'GPU-s / $ per 1,000-step run (warm; cold)',
    value: (r) =>
      ok(r, 'cost') &&
      `${n(r.cost.perThousandStepRun.warmGpuSeconds, 0)} s / $${n(r.cost.perThousandStepRun.warmDollars, 3)}; ${n(r.cost.perThousandStepRun.coldGpuSeconds, 0)} s / $${n(r.cost.perThousandStepRun.coldDollars, 3)}`,
    baseline: (r) =>
      ok(r, 'cost') &&
      `anchor: $${r.cost.anchor.dollarsPerRun} ≈ ${r.cost.anchor.gpuSecondsPerRun} H100-s at $${r.cost.anchor.dollarsPerHour}/h; here $${r.cost.dollarsPerGpuHour}/h, tiny model on CPU`,
  },
];

export function summarize(
  results: Results,
  meta: { at: string; quick: boolean; sizes: object; machine: object; seconds: number; compare?: { label: string; results: Results } },
): string {
  const cmp = meta.compare;
  const head = ['item', 'figure', 'this run', 'same-run baseline', 'target', 'within target'];
  if (cmp) head.splice(3, 0, 'after');
  const lines = [
    '# loraflow benchmarks',
    '',
    'Written by `make bench` (`bench/run.ts`); the raw figures are in `bench/results/*.json` (not committed).',
    'Every figure is set against a baseline measured in the same run on the same machine; targets are',
    'from issue 8 and are reported, not asserted.',
    '',
    `Run: ${meta.at}${meta.quick ? ' (--quick)' : ''}, ${(meta.seconds / 60).toFixed(1)} min. Machine: ${JSON.stringify(meta.machine)}.`,
    `Sizes: \`${JSON.stringify(meta.sizes)}\`.`,
    '',
    ...(cmp
      ? [`The **after** column is the same benchmark code, run right after on the same machine against a copy of the tree with one change: ${cmp.label}.`, '']
      : []),
    `| ${head.join(' | ')} |`,
    `| ${head.map(() => '---').join(' | ')} |`,
  ];
  for (const row of rows) {
    if (row.needs && !results[row.needs] && !cmp?.results[row.needs]) continue;
    const value = row.value(results) || '–';
    const cells = [row.item, row.figure, value, (row.baseline?.(results) || '–'), row.target ?? '–', verdict(row.meets?.(results))];
    if (cmp) cells.splice(3, 0, `${row.value(cmp.results) || '–'}${row.meets ? ` (${verdict(row.meets(cmp.results))})` : ''}`);
    lines.push(`| ${cells.join(' | ')} |`);
  }
  const failed = Object.entries(results).filter(([, v]) => v?.error);
  if (failed.length) {
    lines.push('', '**Benchmarks that failed in this run:**', '');
    for (const [k, v] of failed) lines.push(`- ${k}: ${String(v.error).slice(0, 300)}`);
  }
  lines.push(
    '',
    '## How each figure is measured',
    '',
    '1. **Overhead**: pipelines run one at a time through the real workflow, activities and a Temporal worker process',
    '   (`bench/worker.ts` = `worker.ts` + call counting) against runpod-local running',
    '   `test/fixtures/bench_gpu_handler.py` (no-op GPU work, real presigned S3 upload). Each is followed by the same two',
    '   GPU jobs (caption, train) sent straight to `/run` and polled every 25 ms. Extra = pipeline wall − direct wall.',
    '2. **Completion latency**: pipelines started together, train jobs of evenly spread lengths; latency = the workflow’s',
    '   `publish` stage start − the endpoint ledger’s `finishedAt` of the train job. Status calls are counted in the worker',
    '   process (every `/status` and `/status-sync` request) over the train jobs’ minutes (submit → finish).',
    '3. **Scale**: N pipelines with hour-long train jobs held by a few Python worker processes (async handler, SDK',
    '   `concurrency_modifier`), one Temporal worker process; after the ramp, a window samples `/proc/<pid>` of the',
    '   worker and of the Temporal dev server (RSS peak, CPU time) and counts RunPod calls. runpod-local applies RunPod’s',
    '   documented rate limits, so 429s show where a real endpoint would throttle. Chosen jobs end during the window:',
    '   unannounced, or (trainings reporting an ETA) at the ETA their training reported for 30 s before (± 2 s).',
    '4. **Ingest**: the ingest activity (`MockActivityEnvironment`) on N generated 8 MP JPEGs (quality 90, noise on',
    '   gradients, ~3.2 MB) against versitygw, and the same files PUT raw to the same server (one at a time, and 8 in',
    '   flight). Stored bytes are the manifest\'s objects\' sizes. Validation: ingest\'s `judgeImage` on every file, 8 in',
    '   flight, without S3; baselines on 10 of them at the same concurrency: a full decode, and the PNG re-encode of before.',
    '5. **GPU efficiency**: the real GPU worker (`gpu-worker/handler.py`) on the tiny model on CPU through runpod-local;',
    '   billed = the endpoint’s `executionTime` (+ the worker’s start for the first, cold job); training = the worker’s',
    '   `metrics.seconds.training`. The lent-GPU comparison against diffusers’ reference script is not measured.',
    '5. **Fixed overhead** (`bench/fixed-overhead.ts`): the same worker on the FLUX-shaped tiny model, one process per',
    '   configuration, after a warm-up job on another model: a training’s first segment, its second (resumed from the',
    '   first’s checkpoint) and a retrain (new seed, same images); share = (executionTime − training) ÷ executionTime.',
    '   Baseline: `LORAFLOW_KEEP_DENOISER=0` and no encoding refs, i.e. every job downloads, loads and encodes anew.',
    '6. **Cost**: the warm job’s fixed seconds + 1,000 × measured seconds per step, at `BENCH_GPU_PRICE_PER_HOUR`;',
    '   cold adds what the cold job spent outside training beyond a warm one.',
    '',
    'Profiling notes and the proposed changes with their before/after: `bench/PROFILE.md`.',
    '',
  );
  return `${lines.join('\n')}\n`;
}

function verdict(v: boolean | undefined): string {
  return v === undefined ? '–' : v ? 'yes' : '**no**';
}
