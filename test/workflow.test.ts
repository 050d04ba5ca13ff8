// The trainLora workflow on the real Temporal dev server (@temporalio/testing), with the real
// activities, real S3 (versitygw) and the local RunPod endpoint running a scripted Python handler
// under the unmodified runpod worker loop. The stub-activity version of the story is
// test/unit/workflow.test.ts; this file proves what only real services can.
import path from 'node:path';
import { ActivityFailure, ApplicationFailure, WorkflowFailedError, type WorkflowHandle, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { status } from '../cli/inspect.js';
import { TrainRequest, type PipelineProgress } from '../contract/pipeline.js';
import { keyOfUri, runKeyOf, runKeys } from '../lib/keys.js';
import { getJson, listKeys, sha256OfObject } from '../lib/s3.js';
import { makeDataset } from '../testkit/datasets.js';
import { recordHistory } from '../testkit/histories.js';
import { loopbackWebhookEnv, type PipelineFixture, startPipelineFixture, testConfig } from '../testkit/services.js';
import { until } from '../testkit/wait.js';
import { watchedFetch } from '../testkit/watched-fetch.js';
import { startHubRecorder } from './hub-recorder.js';
import { LoraBaseModelKey, LoraDatasetHashKey, LoraStageKey, progressQuery } from '../workflows/definitions.js';
import type { PublishingTrainLora } from '../workflows/index.js';

let f: PipelineFixture;
let dataset: string;

beforeAll(async () => {
  f = await startPipelineFixture('wf');
  dataset = await makeDataset(path.join(f.tmp.dir, 'dataset'), { images: 3, captioned: 2 });
});
afterAll(() => f?.stop());

/** The scripted handler sleeps `seed` ms per step. */
const request = (triggerWord: string, steps: number, msPerStep = 20) =>
  TrainRequest.parse({ name: 'robot', dataset: { path: dataset, fingerprint: 'a'.repeat(64) }, training: { triggerWord, baseModel: 'tiny-sd', params: { steps, seed: msPerStep } } });

/** `loraflow status` (the query's stage and GPU state, the heartbeat's step) until `ok`. */
const progressUntil = (handle: WorkflowHandle, ok: (p: PipelineProgress) => boolean, timeoutMs = 60_000) => until(() => status(f.env.client, handle.workflowId), ok, timeoutMs, 200);
const ledgerOf = (id: string) => f.gpu.endpoint.ledger().find((e) => e.id === id);
const trainJobs = () => f.gpu.endpoint.ledger().filter((e) => e.task === 'train');

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
    const before = trainJobs().length;
    const { handle, published, progress } = await f.withWorkers(async (taskQueue) => {
      const handle = await f.start(taskQueue, request('lfrobot', 5));
      const published = await handle.result();
      return { handle, published, progress: await handle.query(progressQuery) };
    });

    expect(published.uri).toMatch(new RegExp(`^s3://${f.s3.storage.bucket}/loras/robot/\\d{8}-\\d{6}-[0-9a-f-]{8}/lora\\.safetensors$`));
    expect(await sha256OfObject(f.s3.storage, keyOfUri(published.uri))).toMatchObject({ sha256: published.sha256, bytes: published.bytes });
    const metadata = await getJson<{ dataset: { images: number; manifestSha256: string; captions: { sidecar: number; gpuCaptioned: number } }; triggerWord: string; baseModel: string }>(
      f.s3.storage,
      keyOfUri(published.metadataUri),
    );
    expect(metadata.dataset).toMatchObject({ images: 3, captions: { sidecar: 2, gpuCaptioned: 1 } });
    expect(metadata.triggerWord).toBe('lfrobot');

    expect(progress.stage).toBe('published');
    expect(Object.keys(progress.stageStartedAt)).toEqual(['ingest', 'caption', 'train', 'publish', 'published']);
    const attrs = (await handle.describe()).typedSearchAttributes;
    expect(attrs.get(LoraStageKey)).toBe('published');
    expect(attrs.get(LoraBaseModelKey)).toBe(metadata.baseModel);
    expect(attrs.get(LoraDatasetHashKey)).toBe(metadata.dataset.manifestSha256);
    expect(trainJobs().length - before).toBe(1);

    // History holds keys, ids and hashes: no signed URLs, keys or secrets.
    const text = JSON.stringify(await handle.fetchHistory());
    for (const secret of ['X-Amz-Signature', 'X-Amz-Credential', testConfig.AWS_SECRET_ACCESS_KEY, 'test-key']) expect(text).not.toContain(secret);
    await recordHistory(handle, 'published');
  });

  it('pushes the published version to the Hub where the worker has HF_TOKEN; a refused token leaves it published', async () => {
    const token = 'hf_workflowtesttoken123';
    const [accepting, refusing] = await Promise.all([startHubRecorder({ token, username: 'tester' }), startHubRecorder({ token, failWith: 401 })]);
    try {
      const hub = (endpoint: string) => ({ deps: { hub: { token, endpoint, namespace: 'test-org', private: true, baseModels: {} } } });
      const robot = (steps: number) => ({ ...request('lfrobot', steps), name: 'hub-robot' });
      const pushed = await f.withWorkers(async (tq) => (await f.start(tq, robot(3))).result(), hub(accepting.url));
      expect(pushed.hub).toMatchObject({ outcome: 'pushed', repo: 'test-org/hub-robot' });
      expect(accepting.repos.get('test-org/hub-robot')?.commits.at(-1)?.title).toBe(`loraflow: hub-robot ${pushed.version}`);

      const refused = await f.withWorkers(async (tq) => (await f.start(tq, robot(4))).result(), hub(refusing.url));
      expect(refused.uri).toContain('/loras/hub-robot/');
      expect(refused.hub).toMatchObject({ outcome: 'failed', error: expect.stringContaining('HF_TOKEN') });
      expect(refused.hub?.error).not.toContain(token);
    } finally {
      await Promise.all([accepting.stop(), refusing.stop()]);
    }
  });

  it('fails with the GPU worker’s reason and error class when the GPU job fails', async () => {
    const { failure, handle } = await f.withWorkers(async (tq) => {
      const handle = await f.start(tq, request('failinput', 3));
      return { failure: await failureOf(handle), handle };
    });
    expect(failure.type).toBe('GpuINPUT');
    expect(failure.message).toContain('scripted bad input');
    expect(failure.nonRetryable).toBe(true);
    await recordHistory(handle, 'failed');
  });

  it('cancels the GPU job and fails the run once its cost passes the budget, pricing by GPU type', async () => {
    const published = await listKeys(f.s3.storage, 'loras/');
    // $1 per GPU-second on the endpoint's GPU type; unlisted GPUs would be free. A 30 s training
    // with a budget of 1.5 is stopped about a second and a half in.
    const pricing = { LORAFLOW_GPU_TYPE: 'Scripted GPU 80GB', LORAFLOW_GPU_PRICES: 'scripted gpu=3600', LORAFLOW_GPU_PRICE_PER_HOUR: '0' };
    const t0 = Date.now();
    const { failure, stage } = await f.withWorkers(
      async (tq) => {
        const handle = await f.start(tq, { ...request('lfrobot', 600, 50), budget: 1.5 });
        const failure = await failureOf(handle);
        return { failure, stage: (await handle.query(progressQuery)).stage };
      },
      { config: pricing },
    );
    expect(Date.now() - t0).toBeLessThan(25_000); // the 30 s training did not run to its end
    expect(failure.type).toBe('BudgetExceeded');
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toMatch(/^the run's GPU cost reached \d+\.\d+, over its budget of 1\.50: GPU job \S+ was cancelled$/);
    const train = trainJobs().at(-1)!;
    expect(failure.message).toContain(train.id);
    await until(() => ledgerOf(train.id)?.status, (st) => st === 'CANCELLED', 10_000);
    expect(stage).toBe('failed');
    expect(await listKeys(f.s3.storage, 'loras/')).toEqual(published);
    // What was spent is priced at the type's price: a bit over the budget (one status interval), far under 30 s.
    const spent = (failure.details?.[0] as { spent: number }).spent;
    expect(spent).toBeGreaterThan(1.5);
    expect(spent).toBeLessThan(6);
  });

  it('refuses to publish when the GPU job reports COMPLETED without the artifact', async () => {
    const published = await listKeys(f.s3.storage, 'loras/');
    const failure = await f.withWorkers(async (tq) => failureOf(await f.start(tq, request('badartifact', 2))));
    expect(failure.type).toBe('ArtifactNotVerified');
    expect(failure.message).toMatch(/reported COMPLETED but its LoRA is missing/);
    expect(await listKeys(f.s3.storage, 'loras/')).toEqual(published);
  });

  for (const stage of ['caption', 'train'] as const) {
    it(`cancelling during ${stage} cancels the GPU job before the workflow closes`, async () => {
      await f.withWorkers(async (tq) => {
        const handle = await f.start(tq, stage === 'caption' ? request('slowcaption', 2) : request('lfrobot', 601, 50));
        const progress = await progressUntil(handle, (p) => p.stage === stage && !!p.gpuJobId && p.gpuStatus === 'IN_PROGRESS');
        await handle.cancel();
        await expect(handle.result()).rejects.toThrow(WorkflowFailedError);
        expect((await handle.describe()).status.name).toBe('CANCELLED');
        expect((await handle.query(progressQuery)).stage).toBe('cancelled');
        expect(ledgerOf(progress.gpuJobId!)?.status).toBe('CANCELLED');
        if (stage === 'train') await recordHistory(handle, 'cancelled');
      });
    });
  }

  it('a crash between /run returning and the first heartbeat still pays for one training', async () => {
    const before = f.gpu.endpoint.ledger().length;
    // The answer to the first train /run is lost after the job was created: its id is never heartbeated.
    let lost = false;
    const runpod = f.gpu.clientWith(
      watchedFetch((url, body) => {
        if (lost || !url.endsWith('/run') || body?.input?.task !== 'train') return 'pass';
        lost = true;
        return 'lose-answer';
      }),
    );
    const published = await f.withWorkers(async (tq) => (await f.start(tq, request('lfrobot', 20, 50))).result(), { deps: { runpod } });
    expect(lost).toBe(true);
    expect(published.uri).toContain('/loras/robot/');
    const trains = f.gpu.endpoint.ledger().slice(before).filter((e) => e.task === 'train');
    // Either the retry found the first job's claim and followed it (one job), or it submitted a
    // duplicate that stopped at its claim before any work: exactly one training ran to completion.
    expect(trains.filter((e) => e.status === 'COMPLETED')).toHaveLength(1);
    expect(trains.filter((e) => e.status !== 'COMPLETED').every((e) => e.status === 'FAILED' && e.progressUpdates === 0)).toBe(true);
  });

  it('runs a long training as segments, each continuing from the last checkpoint', async () => {
    const before = f.gpu.endpoint.ledger().length;
    const req = { ...request('lfrobot', 30, 50), training: { ...request('lfrobot', 30, 50).training, sampleEvery: 10 } };
    const published = await f.withWorkers(async (tq) => (await f.start(tq, req)).result(), { config: { LORAFLOW_CHECKPOINT_EVERY: '5', LORAFLOW_SEGMENT_SECONDS: '0.5' } });
    const trains = f.gpu.endpoint.ledger().slice(before).filter((e) => e.task === 'train');
    expect(trains.length).toBeGreaterThanOrEqual(2);
    expect(trains.every((e) => e.status === 'COMPLETED')).toBe(true);
    // Each step was trained exactly once: no segment started again from step 0.
    expect(trains.reduce((n, e) => n + e.progressUpdates, 0)).toBe(30);
    const metadata = await getJson<{ samples: { step: number; uri: string }[]; gpuJobIds: string[]; metrics: { steps: number } }>(f.s3.storage, keyOfUri(published.metadataUri));
    expect(metadata.samples.map((x) => x.step)).toEqual([10, 20, 30]);
    expect(metadata.gpuJobIds).toEqual(trains.map((e) => e.id));
    expect(metadata.metrics.steps).toBe(30);
    for (const sample of metadata.samples) expect(await sha256OfObject(f.s3.storage, keyOfUri(sample.uri))).toBeDefined();
  });

  it('a GPU worker killed mid-training: the endpoint retries the job under its id, which resumes from its own checkpoint, and the run says so', async () => {
    const before = f.gpu.endpoint.ledger().length;
    const { published, resuming } = await f.withWorkers(
      async (tq) => {
        const handle = await f.start(tq, request('lfrobot', 60, 100));
        await progressUntil(handle, (p) => p.stage === 'train' && (p.step ?? 0) >= 25);
        process.kill(f.gpu.endpoint.workers().find((w) => w.state === 'running')!.pid!, 'SIGKILL');
        const resuming = await until(() => status(f.env.client, handle.workflowId), (s) => s.gpuState === 'resuming', 30_000, 100);
        return { published: await handle.result(), resuming };
      },
      { config: { LORAFLOW_CHECKPOINT_EVERY: '10' } },
    );
    expect(resuming.state).toMatch(/^train: GPU worker lost, resuming from the last checkpoint: the endpoint is running the job again/);
    expect(published.uri).toContain('/loras/robot/');
    // One job, two starts: the second met its own claim and went on (before, it failed as GpuClaimUnconfirmed).
    const trains = f.gpu.endpoint.ledger().slice(before).filter((e) => e.task === 'train');
    expect(trains).toHaveLength(1);
    expect(trains[0]!.attempts.map((a) => a.outcome)).toEqual([expect.stringMatching(/^requeued: worker w-\d+ exited with signal SIGKILL/), 'COMPLETED']);
    // At most one checkpoint interval (10 steps) was trained twice; from step 0 it would be 25 or more.
    const stepsPaid = trains[0]!.progressUpdates;
    expect(stepsPaid).toBeGreaterThanOrEqual(60);
    expect(stepsPaid).toBeLessThanOrEqual(60 + 10);
  });

  it('moves a 1,000-image dataset only by reference: history payloads stay small', async () => {
    const big = await makeDataset(path.join(f.tmp.dir, 'big'), { images: 1000, captioned: 1000, size: 16 });
    const req = TrainRequest.parse({ ...request('lfbig', 3), dataset: { path: big, fingerprint: 'd'.repeat(64) } });
    const { handle, published } = await f.withWorkers(async (tq) => {
      const handle = await f.start(tq, req);
      return { handle, published: await handle.result() };
    });
    expect(published.uri).toContain('/loras/robot/');
    const history = await handle.fetchHistory();
    const payloadSizes = history.events!.flatMap((e) => bytesOfPayloads(e));
    expect(Math.max(...payloadSizes)).toBeLessThan(16 * 1024); // Temporal refuses payloads over ~2 MB
    const metadata = await getJson<{ dataset: { images: number } }>(f.s3.storage, keyOfUri(published.metadataUri));
    expect(metadata.dataset.images).toBe(1000);
  });

  it('waits for a GPU job with /status-sync long-polls: a handful of calls instead of one per poll interval', async () => {
    const calls = { status: 0, statusSync: 0 };
    const runpod = f.gpu.clientWith(
      watchedFetch((url) => {
        if (url.includes('/status-sync/')) calls.statusSync++;
        else if (url.includes('/status/')) calls.status++;
        return 'pass';
      }),
    );
    // 40 steps of 100 ms: polling every 200 ms would make about 20 calls for the train job alone.
    const published = await f.withWorkers(async (tq) => (await f.start(tq, request('lfrobot', 40, 100))).result(), { deps: { runpod }, config: { LORAFLOW_STATUS_WAIT_MS: '10000' } });
    expect(published.uri).toContain('/loras/robot/');
    expect(calls.statusSync).toBeGreaterThanOrEqual(2); // caption and train jobs
    // Plain /status only to read finished jobs' timings for the run's cost.
    expect(calls.status + calls.statusSync).toBeLessThanOrEqual(8);
  });

  it("sees a GPU job's end at once from RunPod's completion webhook, though its status is asked only every 30 s", async () => {
    const config = { LORAFLOW_POLL_MS: '30000', ...(await loopbackWebhookEnv()) };
    const { published, progress } = await f.withWorkers(
      async (tq) => {
        const handle = await f.start(tq, request('lfrobot', 20, 100));
        return { published: await handle.result(), progress: await handle.query(progressQuery) };
      },
      { config },
    );
    expect(published.uri).toContain('/loras/robot/');
    // Both jobs (caption, train) were delivered to the worker's webhook and their end was asked
    // about at once, where the next plain poll of each would have come 30 s after its first.
    const [caption, train] = ['caption', 'train'].map((task) => f.gpu.endpoint.ledger().filter((e) => e.task === task && e.webhook).at(-1)!);
    for (const job of [caption!, train!]) {
      expect(job.webhook, job.task).toMatchObject({ delivered: true, attempts: 1 });
      expect(Date.parse(job.finalAnsweredAt!) - Date.parse(job.finishedAt!), job.task).toBeLessThan(1_000);
    }
    expect(Date.parse(progress.stageStartedAt.publish!) - Date.parse(train!.finishedAt!)).toBeLessThan(5_000);
  });

  it('keeps at most LORAFLOW_MAX_GPU_JOBS GPU jobs on the endpoint, dispatching queued runs by priority', async () => {
    const jobsOf = async (h: WorkflowHandleWithFirstExecutionRunId<PublishingTrainLora>) => {
      const ids = await Promise.all((await listKeys(f.s3.storage, `${runKeys(runKeyOf(h.workflowId, h.firstExecutionRunId)).gpuJobs}/`)).map(async (k) => (await getJson<{ gpuJobId: string }>(f.s3.storage, k)).gpuJobId));
      return ids.map((id) => ledgerOf(id)!).sort((a, b) => a.submittedAt.localeCompare(b.submittedAt));
    };
    // The pipelines' worker runs; the GPU-stage worker (one slot) starts only once every run's
    // caption stage waits in Temporal's queue: three low-priority runs, then an urgent one.
    const taskQueue = 'priority-test';
    const workers = await f.workers(taskQueue, { maxGpuJobs: 1 });
    const [pipelines, gpuStages] = workers.workers;
    const running = [pipelines.run()];
    const low: WorkflowHandleWithFirstExecutionRunId<PublishingTrainLora>[] = [];
    let high: WorkflowHandleWithFirstExecutionRunId<PublishingTrainLora>;
    try {
      for (let i = 0; i < 3; i++) low.push(await f.start(taskQueue, request('lfrobot', 10 + i, 20), { priority: { priorityKey: 5 } }));
      for (const h of low) await progressUntil(h, (p) => p.stage === 'caption');
      high = await f.start(taskQueue, request('lfrobot', 9, 20), { priority: { priorityKey: 1 } });
      await progressUntil(high, (p) => p.stage === 'caption');
      // `loraflow status` says why a queued run does nothing yet.
      expect((await status(f.env.client, low[0]!.workflowId)).state).toMatch(/^caption: waiting for a GPU slot/);
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
    expect(all).toHaveLength(4 * 2); // a caption job (the scripted captioner is not the configured one: no cache) and a train job per run
    for (let i = 1; i < all.length; i++) expect(all[i]!.submittedAt >= all[i - 1]!.finishedAt!, `job ${i} overlaps the one before`).toBe(true);
  });

  it('a retried train activity resumes the same GPU job instead of submitting another', async () => {
    const taskQueue = 'retry-test';
    const before = trainJobs().length;
    const first = await f.workers(taskQueue);
    const handle = await f.start(taskQueue, request('lfrobot', 70, 100));
    const progress = await first.runUntil(progressUntil(handle, (p) => p.stage === 'train' && p.gpuStatus === 'IN_PROGRESS'));
    // runUntil shut the first worker down mid-activity: its attempt fails, the job keeps running.
    expect(ledgerOf(progress.gpuJobId!)?.status).toBe('IN_PROGRESS');

    const published = await (await f.workers(taskQueue)).runUntil(handle.result());
    expect(published.uri).toContain('/loras/robot/');
    expect(trainJobs().length - before).toBe(1);
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
