// Several GPU endpoints on the real stack (Temporal dev server, versitygw, runpod-local running
// the scripted handler): failover of a job that waits for capacity, an endpoint allowing no
// workers, a run pinned to a GPU type, the estimate and its budget refusal, and the GPU-slot cap
// holding across two Temporal workers.
import path from 'node:path';
import { NativeConnection } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { estimateRun } from '../cli/estimate.js';
import { status } from '../cli/inspect.js';
import { startTraining } from '../cli/train.js';
import { type LoraMetadata, TrainRequest } from '../contract/pipeline.js';
import { loadConfig } from '../lib/config.js';
import { keyOfUri, runKeyOf, runKeys } from '../lib/keys.js';
import { getJson } from '../lib/s3.js';
import { makeDataset } from '../testkit/datasets.js';
import { until } from '../testkit/wait.js';
import { type PipelineFixture, startPipelineFixture, TEST_ENV } from '../testkit/services.js';

let f: PipelineFixture;
let dataset: string;

beforeAll(async () => {
  // busy: a GPU of its type is never free (its one worker waits THROTTLED); closed: max workers 0;
  // spare: two workers, so two jobs could run on it at once.
  f = await startPipelineFixture('endpoints', {
    endpoint: { endpointId: 'busy', minWorkers: 0, maxWorkers: 1, faults: { noCapacity: true }, endpoints: [{ endpointId: 'closed', maxWorkers: 0 }, { endpointId: 'spare', workers: 2 }] },
  });
  dataset = await makeDataset(path.join(f.tmp.dir, 'dataset'), { images: 2, captioned: 2 }); // sidecar captions: no caption job
}, 120_000);
afterAll(() => f?.stop());

const request = (name: string, steps: number, extra: Partial<TrainRequest> = {}) =>
  TrainRequest.parse({ name, dataset: { path: dataset, fingerprint: 'b'.repeat(64) }, training: { triggerWord: 'lfbot', baseModel: 'tiny-sd', params: { steps, seed: 20 } }, ...extra });
const ledger = (id: string) => f.gpu.endpoint.endpoint(id).ledger().filter((e) => e.task === 'train');
const usageOf = async (published: { metadataUri: string }) => (await getJson<LoraMetadata>(f.s3.storage, keyOfUri(published.metadataUri))).usage!;
const ENDPOINTS = 'busy:A100 80GB:80:3,closed:H100:80:4,spare:L40S:48:1';

describe('several GPU endpoints', () => {
  it('cancels a job queued past the limit (it never ran) and finishes on the next endpoint, priced there', async () => {
    const config = { LORAFLOW_ENDPOINTS: 'busy:A100 80GB:80:3,spare:L40S:48:1', LORAFLOW_ENDPOINT_QUEUE_WAIT_SECONDS: '2' };
    let runKey = '';
    const published = await f.withWorkers(async (tq) => {
      const handle = await f.start(tq, request('failover', 5));
      runKey = runKeyOf(handle.workflowId, handle.firstExecutionRunId);
      return handle.result();
    }, { config });
    const { jobs } = await usageOf(published);
    expect(jobs.map((j) => [j.endpointId, j.status])).toEqual([['busy', 'CANCELLED'], ['spare', 'COMPLETED']]);
    // The generation left behind is claimed in no job's name: a duplicate of the cancelled job (a
    // /run whose answer was lost) would stop at the claim instead of training for nothing.
    expect(await getJson(f.s3.storage, runKeys(runKey).generation('train', 0).claim)).toEqual({ jobId: `abandoned:${jobs[0]!.gpuJobId}` });
    expect(jobs[1]!.movedFrom).toMatchObject({ from: 'busy', gpuJobId: jobs[0]!.gpuJobId, reason: expect.stringMatching(/^queued \d+ s for capacity on busy \(limit 2 s\)$/) });
    expect(jobs[1]!.pricePerHour).toBe(1);
    // 0 duplicate GPU work: no worker ever took the cancelled job; one job ran the training.
    expect(ledger('busy').find((e) => e.id === jobs[0]!.gpuJobId)).toMatchObject({ status: 'CANCELLED', attempts: [] });
    expect(ledger('spare').filter((e) => e.id === jobs[1]!.gpuJobId && e.attempts.length === 1)).toHaveLength(1);
  });

  it('keeps a job its worker died in on its endpoint, even when a restarted stage finds it queued past the limit', async () => {
    // The service queues a dead worker's job again; a stage resumed on another Temporal worker never
    // saw it running. It holds its claim, so it has run: moving it would redo its steps elsewhere.
    const spare = f.gpu.endpoint.endpoint('spare');
    const o = { config: { LORAFLOW_ENDPOINTS: 'spare:L40S:48:1,busy:A100 80GB:80:3', LORAFLOW_ENDPOINT_QUEUE_WAIT_SECONDS: '1' } };
    const taskQueue = `requeued-${Date.now()}`;
    const since = new Date().toISOString();
    const slow = TrainRequest.parse({ ...request('requeued', 200), training: { triggerWord: 'lfbot', baseModel: 'tiny-sd', params: { steps: 200, seed: 100 } } }); // 100 ms a step
    const first = await f.workers(taskQueue, o);
    const firstRun = first.run();
    const handle = await f.start(taskQueue, slow);
    const job = (await until(() => ledger('spare').find((e) => e.submittedAt >= since && e.status === 'IN_PROGRESS' && e.progressUpdates >= 5), (e) => e !== undefined, 60_000))!;
    spare.patchFaults({ noCapacity: true });
    try {
      first.shutdown();
      await firstRun;
      const gpuWorker = spare.workers().find((w) => w.jobs?.includes(job.id) && w.pid)!;
      process.kill(gpuWorker.pid!, 'SIGKILL');
      await until(() => ledger('spare').find((e) => e.id === job.id)?.status, (status) => status === 'IN_QUEUE', 30_000);
      const second = await f.workers(taskQueue, o);
      const secondRun = second.run();
      await new Promise((r) => setTimeout(r, 6_000)); // the resumed stage waits past the 1 s limit
      expect(ledger('busy').filter((e) => e.submittedAt >= since), 'the requeued job was moved').toEqual([]);
      spare.patchFaults({ noCapacity: false });
      await handle.result();
      second.shutdown();
      await secondRun;
    } finally {
      spare.patchFaults({ noCapacity: false });
    }
    const jobs = ledger('spare').filter((e) => e.submittedAt >= since);
    expect(jobs.map((e) => [e.id, e.status, e.attempts.length])).toEqual([[job.id, 'COMPLETED', 2]]);
    expect(ledger('busy').filter((e) => e.submittedAt >= since)).toEqual([]);
  });

  it('skips an endpoint that allows no workers without submitting to it', async () => {
    const config = { LORAFLOW_ENDPOINTS: 'closed:H100:80:4,spare:L40S:48:1' };
    const before = ledger('closed').length;
    const published = await f.withWorkers(async (tq) => (await f.start(tq, request('closed', 4))).result(), { config });
    const { jobs } = await usageOf(published);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]).toMatchObject({ endpointId: 'spare', movedFrom: { from: 'closed', reason: 'closed allows no workers (max workers 0)' } });
    expect(ledger('closed')).toHaveLength(before);
  });

  it('a run pinned to a GPU type uses only endpoints of that type; a type no endpoint has is refused up front', async () => {
    const config = { LORAFLOW_ENDPOINTS: ENDPOINTS, LORAFLOW_ENDPOINT_QUEUE_WAIT_SECONDS: '600' };
    const busyBefore = ledger('busy').length;
    const published = await f.withWorkers(async (tq) => (await f.start(tq, request('pinned', 4, { gpu: 'l40s' }))).result(), { config });
    expect((await usageOf(published)).jobs.map((j) => [j.endpointId, j.movedFrom])).toEqual([['spare', undefined]]);
    expect(ledger('busy')).toHaveLength(busyBefore);
    const cli = loadConfig({ ...TEST_ENV, LORAFLOW_ENDPOINTS: ENDPOINTS });
    await expect(startTraining(f.env.client, cli, request('pinned', 4, { gpu: 'B200' }), { storage: f.s3.storage })).rejects.toThrow(
      /^gpu: no GPU endpoint fits this run: busy: its GPU is A100 80GB, the run is pinned to B200; closed: .*; spare: .*/,
    );
  });

  it('estimates from the measured runs per endpoint and refuses a run over its budget before any GPU job', async () => {
    const cli = loadConfig({ ...TEST_ENV, LORAFLOW_ENDPOINTS: ENDPOINTS });
    // A published tiny-sd run: its speed is measured (the scripted worker reports device "cpu").
    await f.withWorkers(async (tq) => (await f.start(tq, request('measured', 4))).result(), { config: { LORAFLOW_ENDPOINTS: 'spare:L40S:48:1' } });
    const estimate = await estimateRun(f.s3.storage, cli, request('estimate', 1000, { budget: 0.05 }));
    expect(estimate.endpoints.map((e) => [e.endpointId, e.source, e.pricePerHour])).toEqual([
      ['busy', 'measured-elsewhere', 3],
      ['closed', 'measured-elsewhere', 4],
      ['spare', 'measured-elsewhere', 1],
    ]);
    expect(estimate.endpoints[0]!.samples).toBeGreaterThanOrEqual(1);
    const first = estimate.endpoints[0]!;
    expect(first.withinBudget).toBe(first.cost <= 0.05);
    // A budget under the first endpoint's estimate: refused with both figures, no workflow, no job.
    const jobsBefore = f.gpu.endpoint.ledger().length;
    const budget = Math.max(0.000001, Math.floor(first.cost * 0.5 * 1e6) / 1e6);
    await expect(startTraining(f.env.client, cli, request('estimate', 1000, { budget }), { storage: f.s3.storage })).rejects.toThrow(
      /^budget: the run's estimated GPU cost is \$\d+\.\d+ \(\d+(\.\d+)? GPU s on busy\), over its budget of \$\d+\.\d+$/,
    );
    expect(f.gpu.endpoint.ledger()).toHaveLength(jobsBefore);
  });

  it('keeps LORAFLOW_MAX_GPU_JOBS jobs per endpoint across two Temporal workers, not per worker', async () => {
    // Each worker would run two GPU stages at once; the endpoint's one slot is shared by both.
    const taskQueue = 'slots-test';
    const o = { maxGpuJobs: 2, config: { LORAFLOW_ENDPOINTS: 'spare:L40S:48:1', LORAFLOW_MAX_GPU_JOBS: '1' } };
    const since = new Date().toISOString();
    // Two worker processes: each has its own connection (one connection takes one worker per queue).
    const second = await NativeConnection.connect({ address: f.env.address });
    const workers = [await f.workers(taskQueue, o), await f.workers(taskQueue, { ...o, worker: { connection: second } })];
    const running = workers.map((w) => w.run());
    try {
      const handles = await Promise.all([0, 1, 2, 3].map((i) => f.start(taskQueue, request(`slots-${i}`, 8 + i))));
      // A stage a worker started, refused by the lease: `loraflow status` names the full endpoint.
      const states = () => Promise.all(handles.map(async (h) => (await status(f.env.client, h.workflowId)).state));
      await until(states, (s) => s.some((x) => /^train: waiting for a GPU slot on spare \(/.test(x)), 30_000, 250);
      await Promise.all(handles.map((h) => h.result()));
    } finally {
      for (const w of workers) w.shutdown();
      await Promise.allSettled(running);
      await second.close();
    }
    const jobs = ledger('spare').filter((e) => e.submittedAt >= since).sort((a, b) => a.submittedAt.localeCompare(b.submittedAt));
    expect(jobs).toHaveLength(4);
    // Never two at once: each job was taken after the one before it had finished.
    for (let i = 1; i < jobs.length; i++) expect(jobs[i]!.submittedAt >= jobs[i - 1]!.finishedAt!, `job ${i} overlaps the one before`).toBe(true);
  });
});
