// The promise under the real service's rules, on the real Temporal server, versitygw and
// runpod-local with the service's defaults (a dead worker's job retried under its id, results
// purged after their retention, documented health only): a retried request pays only for the
// steps left, a caption job is claimed, a worker outage longer than the retention still
// publishes with its cost, a job's execution timeout is sized to its work, segments that stop
// making progress fail clearly, a cancel under a storm of 429s is confirmed, a terminated run's
// GPU job is cancelled by the janitor, history stays small, and an endpoint without workers says so.
import path from 'node:path';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { status } from '../cli/inspect.js';
import { startTraining } from '../cli/train.js';
import { type PipelineProgress, TrainRequest } from '../contract/pipeline.js';
import { makeDataset } from '../testkit/datasets.js';
import { type PipelineFixture, startPipelineFixture, testConfig } from '../testkit/services.js';
import { until } from '../testkit/wait.js';
import { watchedFetch } from '../testkit/watched-fetch.js';
import { janitor } from '../workflows/index.js';

let f: PipelineFixture;
let captioned: string;
let uncaptioned: string;
const taskQueue = 'promise';
const RESULT_TTL_MS = 1_500;

beforeAll(async () => {
  f = await startPipelineFixture('promise', {
    endpoint: { resultTtlMs: RESULT_TTL_MS, endpoints: [{ endpointId: 'no-workers', workerCommand: [], workers: 0 }] },
  });
  await f.serve(taskQueue, { config: { LORAFLOW_CHECKPOINT_EVERY: '10' } });
  captioned = await makeDataset(path.join(f.tmp.dir, 'captioned'), { images: 2, captioned: 2 });
  uncaptioned = await makeDataset(path.join(f.tmp.dir, 'uncaptioned'), { images: 2, captioned: 0, size: 24 });
});
afterAll(() => f?.stop());

/** The scripted handler sleeps `seed` ms per step; `steps` and `seed` also make each training distinct. */
const request = (name: string, steps: number, msPerStep: number, dataset = captioned) =>
  TrainRequest.parse({ name, dataset: { path: dataset, fingerprint: 'c'.repeat(64) }, training: { triggerWord: 'lfpromise', baseModel: 'tiny-sd', params: { steps, seed: msPerStep } } });
const progressUntil = (handle: WorkflowHandle, ok: (p: PipelineProgress) => boolean, timeoutMs = 60_000) => until(() => status(f.env.client, handle.workflowId), ok, timeoutMs, 150);
const jobsSince = (since: number, task: string) => f.gpu.endpoint.ledger().slice(since).filter((e) => e.task === task);
const failed = (handle: WorkflowHandle) => handle.result().then(() => undefined, (err: unknown) => err as WorkflowFailedError);

describe('the promise under the service’s rules', () => {
  it('a retried request (after a cancel) is a new run that resumes from the newest checkpoint of the same training', async () => {
    const config = { ...testConfig, LORAFLOW_TASK_QUEUE: taskQueue };
    const req = request('retried', 60, 100);
    const since = f.gpu.endpoint.ledger().length;
    const first = await startTraining(f.env.client, config, req);
    await progressUntil(first.handle, (p) => p.stage === 'train' && (p.step ?? 0) >= 25);
    await first.handle.cancel();
    expect(await failed(first.handle)).toBeInstanceOf(WorkflowFailedError);

    // The same request again: the cancelled run may be retried (before, its claim stopped the new run).
    const second = await startTraining(f.env.client, config, req);
    expect(second.attached).toBe(false);
    expect(second.handle.workflowId).toBe(first.handle.workflowId);
    const published = await second.handle.result();
    expect(published.uri).toContain('/loras/retried/');
    const trains = jobsSince(since, 'train');
    expect(trains.map((e) => e.status)).toEqual(['CANCELLED', 'COMPLETED']);
    // The second run started from the first one's checkpoint (step 20 or 30), not from step 0.
    expect(trains[1]!.progressUpdates).toBeLessThanOrEqual(60 - 20);
    expect(trains[0]!.progressUpdates + trains[1]!.progressUpdates).toBeLessThanOrEqual(60 + 10);
  });

  it('a caption job claims its work: a duplicate submitted after a lost /run answer stops before captioning', async () => {
    const since = f.gpu.endpoint.ledger().length;
    let lost = false;
    const runpod = f.gpu.clientWith(
      watchedFetch((url, body) => {
        if (lost || !url.endsWith('/run') || body?.input?.task !== 'caption') return 'pass';
        lost = true;
        return 'lose-answer';
      }),
    );
    const published = await f.withWorkers(async (tq) => (await f.start(tq, request('caption-claim', 3, 10, uncaptioned))).result(), { deps: { runpod } });
    expect(lost).toBe(true);
    expect(published.uri).toContain('/loras/caption-claim/');
    const captions = jobsSince(since, 'caption');
    expect(captions.length).toBeGreaterThanOrEqual(2); // the lost one and the retry's
    expect(captions.filter((e) => e.status === 'COMPLETED')).toHaveLength(1);
    expect(captions.filter((e) => e.status !== 'COMPLETED').every((e) => e.status === 'FAILED')).toBe(true);
  });

  it('a Temporal worker outage longer than the endpoint keeps results still publishes, with the job’s cost', async () => {
    const taskQueue = 'outage';
    const since = f.gpu.endpoint.ledger().length;
    const before = await f.workers(taskQueue);
    const handle = await f.start(taskQueue, request('outage', 40, 50));
    await before.runUntil(progressUntil(handle, (p) => p.stage === 'train' && (p.step ?? 0) >= 1));
    // No worker watches the job while it finishes and its result is purged.
    const train = await until(() => jobsSince(since, 'train')[0], (e) => e?.status === 'COMPLETED', 30_000, 100);
    await new Promise((r) => setTimeout(r, RESULT_TTL_MS + 1_000));
    await expect(f.gpu.client.status(train!.id)).rejects.toThrow(/404/);

    const published = await (await f.workers(taskQueue)).runUntil(handle.result());
    expect(published.uri).toContain('/loras/outage/');
    expect(jobsSince(since, 'train')).toHaveLength(1); // read from the result it left in S3, not trained again
    const job = published.usage!.jobs.find((j) => j.gpuJobId === train!.id)!;
    expect(job.executionMs).toBeGreaterThan(1_000); // the worker's own account of its 2 s of training
    expect(published.usage!.unknownJobs).toBe(0);
  });

  it('sizes each job’s execution timeout to its work; segments that stop making progress fail the run clearly', async () => {
    const policies: Record<string, number>[] = [];
    const runpod = f.gpu.clientWith(
      watchedFetch((url, body) => {
        if (url.endsWith('/run') && body?.policy) policies.push(body.policy);
        return 'pass';
      }),
    );
    const config = { LORAFLOW_SEGMENT_SECONDS: '0.5', LORAFLOW_JOB_SETUP_SECONDS: '60' };
    const err = await f.withWorkers(async (tq) => failed(await f.start(tq, { ...request('stuck', 20, 10), training: { ...request('stuck', 20, 10).training, triggerWord: 'stuck' } })), { deps: { runpod }, config });
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err!.cause as Error & { cause?: Error & { type?: string } }).cause!;
    expect(cause.type).toBe('GpuNoProgress');
    expect(cause.message).toMatch(/ended a segment at step 1 without getting past step 1/);
    // (0.5 s segment + 60 s setup) + 5 min wrap-up, and a TTL a day longer: never the endpoint's 10 minutes.
    expect(policies[0]).toEqual({ executionTimeout: 60_500 + 300_000, ttl: 60_500 + 300_000 + 24 * 3_600_000 });
  });

  it('a cancel under a storm of 429s is confirmed before the run says cancelled', async () => {
    const since = f.gpu.endpoint.ledger().length;
    const handle = await f.start(taskQueue, request('storm', 600, 50));
    await progressUntil(handle, (p) => p.stage === 'train' && p.gpuStatus === 'IN_PROGRESS');
    // The next 8 cancels are refused (before, the cancel gave up after 6 and the job billed on).
    f.gpu.endpoint.endpoint().setFaults({ api: { throttleNext: 8, operations: ['cancel'] } });
    try {
      await handle.cancel();
      expect(await failed(handle)).toBeInstanceOf(WorkflowFailedError);
      expect((await handle.describe()).status.name).toBe('CANCELLED');
      expect(jobsSince(since, 'train').map((e) => e.status)).toEqual(['CANCELLED']);
    } finally {
      f.gpu.endpoint.endpoint().setFaults({});
    }
  });

  it('the janitor cancels the GPU job of a run that was terminated (which skips its own cleanup)', async () => {
    const since = f.gpu.endpoint.ledger().length;
    const handle = await f.start(taskQueue, request('terminated', 601, 50));
    await progressUntil(handle, (p) => p.stage === 'train' && p.gpuStatus === 'IN_PROGRESS');
    await handle.terminate('operator terminated it');
    expect(jobsSince(since, 'train').map((e) => e.status)).toEqual(['IN_PROGRESS']);
    const report = await f.env.client.workflow.execute(janitor, { taskQueue, workflowId: `janitor-${Date.now()}` });
    expect(report.cancelled).toEqual([jobsSince(since, 'train')[0]!.id]);
    expect(jobsSince(since, 'train').map((e) => e.status)).toEqual(['CANCELLED']);
  });

  it('keeps history small: a training across many segments signals state changes, not progress ticks', async () => {
    const { handle, published } = await f.withWorkers(
      async (tq) => {
        const handle = await f.start(tq, request('segments', 60, 50));
        return { handle, published: await handle.result() };
      },
      { config: { LORAFLOW_SEGMENT_SECONDS: '0.4', LORAFLOW_CHECKPOINT_EVERY: '5' } },
    );
    expect(published.uri).toContain('/loras/segments/');
    const events = (await handle.fetchHistory()).events!;
    const signals = events.filter((e) => e.workflowExecutionSignaledEventAttributes).map((e) => JSON.stringify(e.workflowExecutionSignaledEventAttributes!.input));
    const jobs = published.usage!.jobs.length;
    expect(jobs).toBeGreaterThanOrEqual(4);
    // A few state changes per job (queued, running, finished), never one per step or per poll.
    expect(signals.length).toBeLessThanOrEqual(4 * jobs);
    for (let i = 1; i < signals.length; i++) expect(signals[i], `signal ${i} repeats the one before`).not.toBe(signals[i - 1]);
  });

  it('says so when the endpoint allows no workers (from the REST API’s max workers, not a local extra)', async () => {
    const runpod = f.gpu.clientWith(undefined, 'no-workers');
    await f.withWorkers(
      async (tq) => {
        const handle = await f.start(tq, request('no-workers', 5, 10));
        const shown = await progressUntil(handle, (p) => p.stage === 'train' && p.gpuState === 'waiting-for-capacity', 30_000);
        expect(shown.state).toMatch(/^train: waiting for GPU capacity: endpoint has no workers allowed \(max workers 0\) \(GPU job .+\)$/);
        await handle.cancel();
        await failed(handle);
      },
      { deps: { runpod } },
    );
  });
});
