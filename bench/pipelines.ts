// Items 1 and 2: orchestration overhead per pipeline against direct /run calls, and completion
// latency (endpoint marks the train job COMPLETED → workflow leaves the train stage) with the
// number of RunPod status calls per job-minute.
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { TrainRequest, type PipelineProgress } from '../contract/pipeline.js';
import type { DatasetManifest } from '../contract/pipeline.js';
import { getJson, presignGet, presignPut } from '../lib/s3.js';
import type { RunpodClient, RunpodJobStatus } from '../lib/runpod-client.js';
import { makeDataset } from '../testkit/datasets.js';
import { progressQuery } from '../workflows/definitions.js';
import { trainLora } from '../workflows/index.js';
import { type BenchStack, callsOf, diffCounts, mean, percentile, pool, round, startBenchStack } from './lib.js';

const HANDLER = 'test/fixtures/bench_gpu_handler.py';

export function request(dataset: string, opts: { steps: number; msPerStep: number; name?: string }): TrainRequest {
  return TrainRequest.parse({
    name: opts.name ?? 'bench',
    dataset: { path: dataset, fingerprint: 'b'.repeat(64) },
    training: { triggerWord: 'lfbench', baseModel: 'tiny-sd', params: { steps: opts.steps, seed: opts.msPerStep } },
  });
}

export async function runPipeline(stack: BenchStack, req: TrainRequest) {
  const started = Date.now();
  const handle = await stack.client.workflow.start(trainLora, { taskQueue: stack.taskQueue, workflowId: `bench-${randomUUID()}`, args: [req] });
  await handle.result();
  const seconds = (Date.now() - started) / 1000;
  const progress: PipelineProgress = await handle.query(progressQuery);
  return { seconds, progress, workflowId: handle.workflowId };
}

/** Submits a job and polls /status every `pollMs` until it is final; wall seconds. */
async function direct(client: RunpodClient, input: unknown, pollMs = 25): Promise<{ seconds: number; status: RunpodJobStatus }> {
  const started = Date.now();
  const { id } = await client.run(input);
  for (;;) {
    const status = await client.status(id);
    if (['COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT'].includes(status.status)) {
      if (status.status !== 'COMPLETED') throw new Error(`direct job ${id} ${status.status}: ${status.error}`);
      return { seconds: (Date.now() - started) / 1000, status };
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

// ------------------------------------------------------------------ 1. overhead

export async function benchOverhead(o: { n: number; log: (m: string) => void }) {
  const stack = await startBenchStack({ handler: HANDLER, log: o.log });
  try {
    // 4 images, 2 with sidecar captions: the pipeline runs a caption job and a train job.
    const dataset = await makeDataset(path.join(stack.dir, 'dataset'), { images: 4, captioned: 2 });
    const req = request(dataset, { steps: 1, msPerStep: 0 });

    // The same two GPU jobs the pipeline submits, sent straight to /run, polled every 25 ms.
    const directPair = async (manifestKey: string) => {
      const manifest = await getJson<DatasetManifest>(stack.storage, manifestKey);
      const uncaptioned = manifest.images.filter((i) => !i.caption);
      const caption = await direct(stack.runpodClient, {
        task: 'caption',
        triggerWord: req.training.triggerWord,
        images: await Promise.all(uncaptioned.map(async (i) => ({ id: i.id, url: await presignGet(stack.storage, i.key) }))),
      });
      const train = await direct(stack.runpodClient, {
        task: 'train',
        baseModel: req.training.baseModel,
        triggerWord: req.training.triggerWord,
        params: req.training.params,
        images: await Promise.all(manifest.images.map(async (i) => ({ id: i.id, url: await presignGet(stack.storage, i.key), caption: i.caption ?? 'x' }))),
        output: { loraUrl: await presignPut(stack.storage, `direct/${randomUUID()}/lora.safetensors`) },
      });
      return caption.seconds + train.seconds;
    };

    // Warm-up (worker bundles workflows, Python worker starts), not counted.
    const warm = await runPipeline(stack, req);
    const manifestKey = (await findManifestKey(stack, warm.workflowId))!;
    await directPair(manifestKey);

    const pipelines: number[] = [];
    const directs: number[] = [];
    const stages: Record<string, number[]> = { ingest: [], caption: [], train: [], publish: [] };
    for (let i = 0; i < o.n; i++) {
      // Interleaved, so drift in the machine's load hits both sides alike.
      const p = await runPipeline(stack, req);
      pipelines.push(p.seconds);
      const at = p.progress.stageStartedAt;
      const t = (s?: string) => (s ? Date.parse(s) : NaN);
      stages.ingest!.push((t(at.caption) - t(at.ingest)) / 1000);
      stages.caption!.push((t(at.train) - t(at.caption)) / 1000);
      stages.train!.push((t(at.publish) - t(at.train)) / 1000);
      stages.publish!.push((t(at.published) - t(at.publish)) / 1000);
      directs.push(await directPair(manifestKey));
    }
    const extra = pipelines.map((p, i) => p - directs[i]!);
    return {
      n: o.n,
      pollMs: 'LORAFLOW_POLL_MS default',
      pipelineSeconds: { mean: round(mean(pipelines)), p50: round(percentile(pipelines, 50)), p99: round(percentile(pipelines, 99)) },
      directSeconds: { mean: round(mean(directs)), p50: round(percentile(directs, 50)), p99: round(percentile(directs, 99)) },
      extraSecondsPerPipeline: { mean: round(mean(extra)), p50: round(percentile(extra, 50)), p99: round(percentile(extra, 99)) },
      stageSecondsMean: Object.fromEntries(Object.entries(stages).map(([k, v]) => [k, round(mean(v))])),
      target: { extraSecondsPerPipeline: 1.5 },
    };
  } finally {
    await stack.stop();
  }
}

async function findManifestKey(stack: BenchStack, workflowId: string): Promise<string | undefined> {
  const history = await stack.client.workflow.getHandle(workflowId).fetchHistory();
  for (const e of history.events ?? []) {
    const payloads = e.activityTaskCompletedEventAttributes?.result?.payloads;
    if (!payloads) continue;
    const text = Buffer.from(payloads[0]!.data!).toString('utf8');
    const m = /"manifestKey":"([^"]+)"/.exec(text);
    if (m) return m[1];
  }
  return undefined;
}

// ------------------------------------------------------------------ 2. completion latency

export async function benchLatency(o: { n: number; jobSeconds: [number, number]; log: (m: string) => void }) {
  // One Python worker holds every job at once (async handler; runpod-local gives it that many).
  const stack = await startBenchStack({
    handler: HANDLER,
    workerEnv: { BENCH_CONCURRENCY: String(o.n + 1) },
    runpodExtra: { concurrency: o.n + 1 },
    log: o.log,
  });
  try {
    // Every image has a sidecar caption: the train job is the only GPU job, so every status call counted is one.
    const dataset = await makeDataset(path.join(stack.dir, 'dataset'), { images: 2, captioned: 2 });
    await runPipeline(stack, request(dataset, { steps: 1, msPerStep: 0 })); // warm-up
    const before = await stack.worker!.counts();
    const ledgerBefore = new Set(stack.runpod.ledger().map((e) => e.id));

    const [lo, hi] = o.jobSeconds;
    // Spread job lengths evenly over [lo, hi] s (1 step of `ms`), started together.
    const runs = await pool(Array.from({ length: o.n }, (_, i) => i), o.n, async (i) => {
      const ms = Math.round((lo + ((hi - lo) * i) / Math.max(1, o.n - 1)) * 1000);
      return runPipeline(stack, request(dataset, { steps: 1, msPerStep: ms }));
    });
    const calls = diffCounts(await stack.worker!.counts(), before);

    const ledger = stack.runpod.ledger().filter((e) => !ledgerBefore.has(e.id) && e.task === 'train');
    const byJob = new Map(ledger.map((e) => [e.id, e]));
    const latencies: number[] = [];
    let jobMs = 0;
    const toActivity: number[] = [];
    for (const r of runs) {
      const train = await trainActivity(stack, r.workflowId);
      const job = byJob.get(train?.gpuJobId ?? '');
      if (!train || !job?.finishedAt) continue;
      latencies.push((Date.parse(r.progress.stageStartedAt.publish!) - Date.parse(job.finishedAt)) / 1000);
      toActivity.push((train.completedAt - Date.parse(job.finishedAt)) / 1000);
    }
    for (const e of ledger) if (e.finishedAt) jobMs += Date.parse(e.finishedAt) - Date.parse(e.submittedAt);
    // Every job should have started at once: the wait in the queue shows whether the endpoint held them all.
    const queued = ledger.filter((e) => e.takenAt).map((e) => (Date.parse(e.takenAt!) - Date.parse(e.submittedAt)) / 1000);
    const jobMinutes = jobMs / 60_000;
    const statusCalls = callsOf(calls, 'status') + callsOf(calls, 'status-sync');
    return {
      n: o.n,
      jobSeconds: o.jobSeconds,
      samples: latencies.length,
      completionLatencySeconds: {
        p50: round(percentile(latencies, 50)),
        p99: round(percentile(latencies, 99)),
        mean: round(mean(latencies)),
        max: round(Math.max(...latencies)),
      },
      /** Part of it: COMPLETED → the train activity's completion recorded by Temporal. */
      toActivityCompletedSeconds: { p50: round(percentile(toActivity, 50)), p99: round(percentile(toActivity, 99)) },
      queueSeconds: { p50: round(percentile(queued, 50)), max: round(Math.max(...queued)) },
      jobMinutes: round(jobMinutes, 2),
      statusCalls,
      statusCallsPerJobMinute: round(statusCalls / jobMinutes, 1),
      runpodCalls: calls.byOp,
      target: { p50: 0.5, statusCallsPerJobMinute: 6 },
    };
  } finally {
    await stack.stop();
  }
}

/** The train activity's GPU job id and when Temporal recorded its completion, from history. */
export async function trainActivity(stack: BenchStack, workflowId: string): Promise<{ gpuJobId: string; completedAt: number } | undefined> {
  const history = await stack.client.workflow.getHandle(workflowId).fetchHistory();
  const events = history.events ?? [];
  const scheduled = events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'trainOnGpu');
  const completed = events.find((e) => String(e.activityTaskCompletedEventAttributes?.scheduledEventId) === String(scheduled?.eventId));
  const payload = completed?.activityTaskCompletedEventAttributes?.result?.payloads?.[0]?.data;
  if (!completed || !payload) return undefined;
  const result = JSON.parse(Buffer.from(payload).toString('utf8')) as { gpuJobId: string };
  const t = completed.eventTime!;
  return { gpuJobId: result.gpuJobId, completedAt: Number(t.seconds) * 1000 + Math.floor((t.nanos ?? 0) / 1e6) };
}
