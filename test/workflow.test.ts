// The trainLora workflow on the real Temporal dev server (@temporalio/testing), with the real
// activities, real S3 (versitygw) and the local RunPod endpoint running a scripted Python handler
// under the unmodified runpod worker loop.
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ActivityFailure, ApplicationFailure, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { createWorkers } from '../lib/workers.js';
import { status } from '../cli/inspect.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ActivityDeps, createActivities } from '../activities/index.js';
import { TrainRequest, type PipelineProgress } from '../contract/pipeline.js';
import { getJson, listKeys, sha256OfObject } from '../lib/s3.js';
import { repoRoot, toolchain } from '../lib/toolchain.js';
import type { PublishingTrainLora } from '../workflows/index.js';
import { LoraBaseModelKey, LoraDatasetHashKey, LoraStageKey, progressQuery } from '../workflows/definitions.js';
import { makeDataset } from './datasets.js';
import { until as untilValue } from './wait.js';
import { startHubRecorder } from './hub-recorder.js';
import { startGpuEndpoint, startS3, startTemporal, tempDir, testConfig } from './harness.js';

const workflowsPath = path.join(repoRoot, 'workflows/index.ts');
let tmp: ReturnType<typeof tempDir>;
let s3: Awaited<ReturnType<typeof startS3>>;
let gpu: Awaited<ReturnType<typeof startGpuEndpoint>>;
let env: TestWorkflowEnvironment;
let dataset: string;

beforeAll(async () => {
  tmp = tempDir('wf');
  [s3, gpu, env] = await Promise.all([startS3(tmp.dir), startGpuEndpoint(tmp.dir, 'test/fixtures/scripted_gpu_handler.py'), startTemporal()]);
  dataset = await makeDataset(path.join(tmp.dir, 'dataset'), { images: 3, captioned: 2 });
});

afterAll(async () => {
  await env?.teardown();
  await gpu?.endpoint.stop();
  await s3?.stop();
  tmp?.remove();
});

const deps = () => ({ storage: s3.storage, runpod: gpu.client, pollIntervalMs: 200 });

function request(triggerWord: string, steps: number, msPerStep = 20) {
  // The scripted handler sleeps `seed` ms per step.
  return TrainRequest.parse({
    name: 'robot',
    triggerWord,
    dataset: { path: dataset, fingerprint: 'a'.repeat(64) },
    baseModel: 'tiny-sd',
    params: { steps, seed: msPerStep },
  });
}

/** Runs `fn` while a worker polls `taskQueue`, its activities built from `deps()` plus `overrides`. */
async function withWorker<T>(taskQueue: string, fn: () => Promise<T>, overrides: Partial<ActivityDeps> = {}, maxGpuJobs?: number): Promise<T> {
  const workers = await createWorkers({
    connection: env.nativeConnection,
    taskQueue,
    workflowsPath,
    activities: createActivities({ ...deps(), ...overrides }),
    maxHeartbeatThrottleInterval: '1 second',
    ...(maxGpuJobs ? { maxGpuJobs } : {}),
  });
  return workers.runUntil(fn());
}

async function start(taskQueue: string, req: TrainRequest, priorityKey?: number): Promise<WorkflowHandle<PublishingTrainLora>> {
  return env.client.workflow.start<PublishingTrainLora>('trainLora', { taskQueue, workflowId: `test-${randomUUID()}`, args: [req], ...(priorityKey ? { priority: { priorityKey } } : {}) });
}

async function until(handle: WorkflowHandle, ok: (p: PipelineProgress) => boolean, timeoutMs = 60_000): Promise<PipelineProgress> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = await handle.query(progressQuery);
    if (ok(p)) return p;
    if (Date.now() > deadline) throw new Error(`timed out waiting; last progress ${JSON.stringify(p)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const ledgerOf = (id: string) => gpu.endpoint.ledger().find((e) => e.id === id);
const trainJobs = () => gpu.endpoint.ledger().filter((e) => e.task === 'train').length;

/** Unwraps WorkflowFailedError → ActivityFailure → ApplicationFailure. */
async function failureOf(handle: WorkflowHandle): Promise<ApplicationFailure> {
  const err = await handle.result().then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(WorkflowFailedError);
  const activity = (err as WorkflowFailedError).cause;
  expect(activity).toBeInstanceOf(ActivityFailure);
  expect(activity!.cause).toBeInstanceOf(ApplicationFailure);
  return activity!.cause as ApplicationFailure;
}

describe('trainLora workflow', () => {
  it('goes ingest → caption → train → publish and publishes a verified artifact', async () => {
    const taskQueue = `tq-${randomUUID()}`;
    const before = trainJobs();
    const { handle, published, progress } = await withWorker(taskQueue, async () => {
      const handle = await start(taskQueue, request('lfrobot', 5));
      const published = await handle.result();
      return { handle, published, progress: await handle.query(progressQuery) };
    });

    expect(published.uri).toMatch(new RegExp(`^s3://${s3.storage.bucket}/loras/robot/\\d{8}-\\d{6}-[0-9a-f-]{8}/lora\\.safetensors$`));
    const key = published.uri.replace(`s3://${s3.storage.bucket}/`, '');
    expect(await sha256OfObject(s3.storage, key)).toEqual({ sha256: published.sha256, bytes: published.bytes });
    const metadata = await getJson<{ dataset: { images: number; manifestSha256: string; captions: { sidecar: number; gpuCaptioned: number } }; triggerWord: string; baseModel: string }>(
      s3.storage,
      published.metadataUri.replace(`s3://${s3.storage.bucket}/`, ''),
    );
    expect(metadata.dataset).toMatchObject({ images: 3, captions: { sidecar: 2, gpuCaptioned: 1 } });
    expect(metadata.triggerWord).toBe('lfrobot');

    expect(progress.stage).toBe('published');
    expect(Object.keys(progress.stageStartedAt)).toEqual(['ingest', 'caption', 'train', 'publish', 'published']);
    const attrs = (await handle.describe()).typedSearchAttributes;
    expect(attrs.get(LoraStageKey)).toBe('published');
    expect(attrs.get(LoraBaseModelKey)).toBe(metadata.baseModel);
    expect(attrs.get(LoraDatasetHashKey)).toBe(metadata.dataset.manifestSha256);
    expect(trainJobs() - before).toBe(1);

    // History holds keys, ids and hashes: no signed URLs, keys or secrets.
    const history = await handle.fetchHistory();
    const text = JSON.stringify(history);
    for (const secret of ['X-Amz-Signature', 'X-Amz-Credential', testConfig.AWS_SECRET_ACCESS_KEY, 'test-key']) expect(text).not.toContain(secret);
    // LORAFLOW_RECORD_HISTORY=v2 writes test/histories/train-lora-v2.json, a history the replay test
    // checks later workflow code against (keep the older ones: running pipelines have those).
    const record = process.env.LORAFLOW_RECORD_HISTORY;
    if (record) {
      const { stdout } = await promisify(execFile)(toolchain.temporal(), ['workflow', 'show', '--address', env.address, '--workflow-id', handle.workflowId, '--output', 'json']);
      writeFileSync(path.join(repoRoot, `test/histories/train-lora-${/^v\d+$/.test(record) ? record : 'v1'}.json`), stdout);
    }
  });

  it('pushes the published version to the Hub where the worker has HF_TOKEN; a refused token leaves it published', async () => {
    const token = 'hf_workflowtesttoken123';
    const [accepting, refusing] = await Promise.all([startHubRecorder({ token, username: 'tester' }), startHubRecorder({ token, failWith: 401 })]);
    try {
      const hubDeps = (endpoint: string) => ({ hub: { token, endpoint, namespace: 'test-org', private: true, baseModels: {} } });
      const taskQueue = `tq-${randomUUID()}`;
      const pushed = await withWorker(taskQueue, async () => (await start(taskQueue, { ...request('lfrobot', 3), name: 'hub-robot' })).result(), hubDeps(accepting.url));
      expect(pushed.hub).toMatchObject({ outcome: 'pushed', repo: 'test-org/hub-robot' });
      expect(accepting.repos.get('test-org/hub-robot')?.commits.at(-1)?.title).toBe(`loraflow: hub-robot ${pushed.version}`);

      const other = `tq-${randomUUID()}`;
      const refused = await withWorker(other, async () => (await start(other, { ...request('lfrobot', 4), name: 'hub-robot' })).result(), hubDeps(refusing.url));
      expect(refused.uri).toContain('/loras/hub-robot/');
      expect(refused.hub).toMatchObject({ outcome: 'failed', error: expect.stringContaining('HF_TOKEN') });
      expect(refused.hub?.error).not.toContain(token);
    } finally {
      await Promise.all([accepting.stop(), refusing.stop()]);
    }
  });

  it('fails with the GPU worker’s reason and error class when the GPU job fails', async () => {
    const taskQueue = `tq-${randomUUID()}`;
    const failure = await withWorker(taskQueue, async () => failureOf(await start(taskQueue, request('failinput', 3))));
    expect(failure.type).toBe('GpuINPUT');
    expect(failure.message).toContain('scripted bad input');
    expect(failure.nonRetryable).toBe(true);
  });

  it('cancels the GPU job and fails the run once its cost passes the budget, pricing by GPU type', async () => {
    const taskQueue = `tq-${randomUUID()}`;
    const published = await listKeys(s3.storage, 'loras/');
    // $1 per GPU-second on the endpoint's GPU type; unlisted GPUs would be free. A 30 s training
    // with a budget of 1.5 is stopped about a second and a half in.
    const pricing = { gpuType: 'Scripted GPU 80GB', gpuPrices: { 'scripted gpu': 3600 }, gpuPricePerHour: 0 };
    const t0 = Date.now();
    const { failure, stage } = await withWorker(
      taskQueue,
      async () => {
        const handle = await start(taskQueue, { ...request('lfrobot', 600, 50), budget: 1.5 });
        const failure = await failureOf(handle);
        return { failure, stage: (await handle.query(progressQuery)).stage };
      },
      pricing,
    );
    expect(Date.now() - t0).toBeLessThan(25_000); // the 30 s training did not run to its end
    expect(failure.type).toBe('BudgetExceeded');
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toMatch(/^the run's GPU cost reached \d+\.\d+, over its budget of 1\.50: GPU job \S+ was cancelled$/);
    const train = gpu.endpoint.ledger().filter((e) => e.task === 'train').at(-1)!;
    expect(failure.message).toContain(train.id);
    await untilValue(() => ledgerOf(train.id)?.status, (st) => st === 'CANCELLED', 10_000);
    expect(stage).toBe('failed');
    expect(await listKeys(s3.storage, 'loras/')).toEqual(published);
    // What was spent is priced at the type's price: a bit over the budget (one status interval), far under 30 s.
    const spent = (failure.details?.[0] as { spent: number }).spent;
    expect(spent).toBeGreaterThan(1.5);
    expect(spent).toBeLessThan(6);
  });

  it('refuses to publish when the GPU job reports COMPLETED without the artifact', async () => {
    const taskQueue = `tq-${randomUUID()}`;
    const published = await listKeys(s3.storage, 'loras/');
    const failure = await withWorker(taskQueue, async () => failureOf(await start(taskQueue, request('badartifact', 2))));
    expect(failure.type).toBe('ArtifactNotVerified');
    expect(failure.message).toMatch(/reported COMPLETED but its LoRA is missing/);
    expect(await listKeys(s3.storage, 'loras/')).toEqual(published);
  });

  for (const stage of ['caption', 'train'] as const) {
    it(`cancelling during ${stage} cancels the GPU job before the workflow closes`, async () => {
      const taskQueue = `tq-${randomUUID()}`;
      await withWorker(taskQueue, async () => {
        const handle = await start(taskQueue, stage === 'caption' ? request('slowcaption', 2) : request('lfrobot', 600, 50));
        const progress = await until(handle, (p) => p.stage === stage && !!p.gpuJobId && p.gpuStatus === 'IN_PROGRESS');
        await handle.cancel();
        await expect(handle.result()).rejects.toThrow(WorkflowFailedError);
        expect((await handle.describe()).status.name).toBe('CANCELLED');
        expect((await handle.query(progressQuery)).stage).toBe('cancelled');
        expect(ledgerOf(progress.gpuJobId!)?.status).toBe('CANCELLED');
      });
    });
  }

  it('a crash between /run returning and the first heartbeat still pays for one training', async () => {
    const taskQueue = `tq-${randomUUID()}`;
    const before = gpu.endpoint.ledger().length;
    // The first train submission "crashes" right after /run returned: the job exists, its id was never heartbeated.
    let crashed = false;
    const runpod = {
      ...gpu.client,
      run: async (input: Parameters<typeof gpu.client.run>[0]) => {
        const submitted = await gpu.client.run(input);
        if (!crashed && (input as { task?: string }).task === 'train') {
          crashed = true;
          throw new Error('worker died after /run returned');
        }
        return submitted;
      },
      status: (id: string) => gpu.client.status(id),
      cancel: (id: string) => gpu.client.cancel(id),
    };
    const published = await withWorker(taskQueue, async () => (await start(taskQueue, request('lfrobot', 20, 50))).result(), { runpod });
    expect(crashed).toBe(true);
    expect(published.uri).toContain('/loras/robot/');
    const trains = gpu.endpoint.ledger().slice(before).filter((e) => e.task === 'train');
    // Either the retry found the first job's claim and followed it (one job), or it submitted a
    // duplicate that stopped at its claim before any work: exactly one training ran to completion.
    expect(trains.filter((e) => e.status === 'COMPLETED')).toHaveLength(1);
    expect(trains.filter((e) => e.status !== 'COMPLETED').every((e) => e.status === 'FAILED' && e.progressUpdates === 0)).toBe(true);
  });

  it('runs a long training as segments, each continuing from the last checkpoint', async () => {
    const taskQueue = `tq-${randomUUID()}`;
    const before = gpu.endpoint.ledger().length;
    const req = { ...request('lfrobot', 30, 50), sampleEvery: 10 };
    const published = await withWorker(taskQueue, async () => (await start(taskQueue, req)).result(), { training: { checkpointEvery: 5, segmentSeconds: 0.5 } });
    const trains = gpu.endpoint.ledger().slice(before).filter((e) => e.task === 'train');
    expect(trains.length).toBeGreaterThanOrEqual(2);
    expect(trains.every((e) => e.status === 'COMPLETED')).toBe(true);
    // Each step was trained exactly once: no segment started again from step 0.
    expect(trains.reduce((n, e) => n + e.progressUpdates, 0)).toBe(30);
    const metadata = await getJson<{ samples: { step: number; uri: string }[]; gpuJobIds: string[]; metrics: { steps: number } }>(
      s3.storage,
      published.metadataUri.replace(`s3://${s3.storage.bucket}/`, ''),
    );
    expect(metadata.samples.map((x) => x.step)).toEqual([10, 20, 30]);
    expect(metadata.gpuJobIds).toEqual(trains.map((e) => e.id));
    expect(metadata.metrics.steps).toBe(30);
    for (const sample of metadata.samples) expect(await sha256OfObject(s3.storage, sample.uri.replace(`s3://${s3.storage.bucket}/`, ''))).toBeDefined();
  });

  it('a GPU worker killed mid-training is replaced by a job resuming from the last checkpoint', async () => {
    const taskQueue = `tq-${randomUUID()}`;
    const before = gpu.endpoint.ledger().length;
    const published = await withWorker(taskQueue, async () => {
      const handle = await start(taskQueue, request('lfrobot', 60, 100));
      await until(handle, (p) => p.stage === 'train' && (p.step ?? 0) >= 25);
      process.kill(gpu.endpoint.workers().find((w) => w.state === 'running')!.pid!, 'SIGKILL');
      return handle.result();
    }, { training: { checkpointEvery: 10, segmentSeconds: 600 } });
    expect(published.uri).toContain('/loras/robot/');
    const trains = gpu.endpoint.ledger().slice(before).filter((e) => e.task === 'train');
    expect(trains.map((e) => e.status)).toEqual(['FAILED', 'COMPLETED']);
    // At most one checkpoint interval (10 steps) was trained twice; from step 0 it would be 25 or more.
    const stepsPaid = trains.reduce((n, e) => n + e.progressUpdates, 0);
    expect(stepsPaid).toBeGreaterThanOrEqual(60);
    expect(stepsPaid).toBeLessThanOrEqual(60 + 10);
  });

  it('moves a 1,000-image dataset only by reference: history payloads stay small', async () => {
    const taskQueue = `tq-${randomUUID()}`;
    const big = await makeDataset(path.join(tmp.dir, 'big'), { images: 1000, captioned: 1000, size: 16 });
    const req = TrainRequest.parse({ ...request('lfbig', 3), dataset: { path: big, fingerprint: 'd'.repeat(64) } });
    const { handle, published } = await withWorker(taskQueue, async () => {
      const handle = await start(taskQueue, req);
      return { handle, published: await handle.result() };
    });
    expect(published.uri).toContain('/loras/robot/');
    const history = await handle.fetchHistory();
    const payloadSizes = history.events!.flatMap((e) => bytesOfPayloads(e));
    expect(Math.max(...payloadSizes)).toBeLessThan(16 * 1024); // Temporal refuses payloads over ~2 MB
    const metadata = await getJson<{ dataset: { images: number } }>(s3.storage, published.metadataUri.replace(`s3://${s3.storage.bucket}/`, ''));
    expect(metadata.dataset.images).toBe(1000);
  });

  it('waits for a GPU job with /status-sync long-polls: a handful of calls instead of one per poll interval', async () => {
    const taskQueue = `tq-${randomUUID()}`;
    const calls = { status: 0, statusSync: 0 };
    const runpod = {
      run: (input: Parameters<typeof gpu.client.run>[0]) => gpu.client.run(input),
      cancel: (id: string) => gpu.client.cancel(id),
      status: (id: string) => (calls.status++, gpu.client.status(id)),
      statusSync: (id: string, waitMs?: number) => (calls.statusSync++, gpu.client.statusSync(id, waitMs)),
    };
    // 40 steps of 100 ms: polling every 200 ms would make about 20 calls for the train job alone.
    const published = await withWorker(taskQueue, async () => (await start(taskQueue, request('lfrobot', 40, 100))).result(), { runpod, statusWaitMs: 10_000 });
    expect(published.uri).toContain('/loras/robot/');
    expect(calls.statusSync).toBeGreaterThanOrEqual(2); // caption and train jobs
    // Plain /status only to read finished jobs' timings for the run's cost.
    expect(calls.status + calls.statusSync).toBeLessThanOrEqual(8);
  });

  it('keeps at most LORAFLOW_MAX_GPU_JOBS GPU jobs on the endpoint, dispatching queued runs by priority', async () => {
    const taskQueue = `tq-${randomUUID()}`;
    const jobsOf = async (h: WorkflowHandle) => {
      const ids = await Promise.all((await listKeys(s3.storage, `runs/${h.workflowId}/gpu-jobs/`)).map(async (k) => (await getJson<{ gpuJobId: string }>(s3.storage, k)).gpuJobId));
      return ids.map((id) => ledgerOf(id)!).sort((a, b) => a.submittedAt.localeCompare(b.submittedAt));
    };
    // The pipelines' worker runs; the GPU-stage worker (one slot) starts only once every run's
    // caption stage waits in Temporal's queue: three low-priority runs, then an urgent one.
    const workers = await createWorkers({ connection: env.nativeConnection, taskQueue, workflowsPath, activities: createActivities(deps()), maxGpuJobs: 1 });
    const [pipelines, gpuStages] = workers.workers;
    const running = [pipelines.run()];
    const low: WorkflowHandle<PublishingTrainLora>[] = [];
    let high: WorkflowHandle<PublishingTrainLora>;
    try {
      for (let i = 0; i < 3; i++) low.push(await start(taskQueue, request('lfrobot', 10 + i, 20), 5));
      for (const h of low) await until(h, (p) => p.stage === 'caption');
      high = await start(taskQueue, request('lfrobot', 9, 20), 1);
      await until(high, (p) => p.stage === 'caption');
      // `loraflow status` says why a queued run does nothing yet.
      expect((await status(env.client, low[0]!.workflowId)).state).toMatch(/^caption: waiting for a GPU slot/);
      running.push(gpuStages.run());
      await Promise.all([...low, high].map((h) => h.result()));
    } finally {
      workers.shutdown();
      await Promise.allSettled(running);
    }
    const highJobs = await jobsOf(high);
    const lowJobs = (await Promise.all(low.map(jobsOf))).flat();
    // The urgent run's first GPU job went ahead of every queued low-priority one.
    for (const j of lowJobs) expect(highJobs[0]!.submittedAt < j.submittedAt, `high ${highJobs[0]!.submittedAt} vs low ${j.submittedAt}`).toBe(true);
    // Never two GPU jobs at once: each was submitted after the one before it had finished.
    const all = [...highJobs, ...lowJobs].sort((a, b) => a.submittedAt.localeCompare(b.submittedAt));
    expect(all).toHaveLength(4 * 2); // a caption job (no captioner set: no cache) and a train job per run
    for (let i = 1; i < all.length; i++) expect(all[i]!.submittedAt >= all[i - 1]!.finishedAt!, `job ${i} overlaps the one before`).toBe(true);
  });

  it('a retried train activity resumes the same GPU job instead of submitting another', async () => {
    const taskQueue = `tq-${randomUUID()}`;
    const before = trainJobs();
    const first = await createWorkers({ connection: env.nativeConnection, taskQueue, workflowsPath, activities: createActivities(deps()) });
    const handle = await start(taskQueue, request('lfrobot', 60, 100));
    const progress = await first.runUntil(until(handle, (p) => p.stage === 'train' && p.gpuStatus === 'IN_PROGRESS'));
    // runUntil shut the first worker down mid-activity: its attempt fails, the job keeps running.
    expect(ledgerOf(progress.gpuJobId!)?.status).toBe('IN_PROGRESS');

    const published = await withWorker(taskQueue, () => handle.result());
    expect(published.uri).toContain('/loras/robot/');
    expect(trainJobs() - before).toBe(1);
    expect(ledgerOf(progress.gpuJobId!)?.status).toBe('COMPLETED');
    const history = await handle.fetchHistory();
    const trainAttempts = history.events!.filter((e) => e.activityTaskStartedEventAttributes && e.activityTaskStartedEventAttributes.attempt! > 1);
    expect(trainAttempts.length).toBeGreaterThan(0);
  });

});

/** Sizes of every payload an event carries (inputs, results, signals). */
function bytesOfPayloads(event: object): number[] {
  const sizes: number[] = [];
  const walk = (value: unknown) => {
    if (!value || typeof value !== 'object') return;
    if ('payloads' in value && Array.isArray((value as { payloads: unknown }).payloads)) {
      for (const p of (value as { payloads: { data?: Uint8Array }[] }).payloads) sizes.push(p.data?.length ?? 0);
    }
    for (const v of Object.values(value)) if (!(v instanceof Uint8Array)) walk(v);
  };
  walk(event);
  return sizes;
}
