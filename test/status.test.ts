// Honest status on the real Temporal dev server: the `progress` query, `loraflow status`, the memo
// and `loraflow logs` tell apart a worker cold-starting, waiting for GPU capacity, training, a lost
// worker being resumed and publishing, from the endpoint's health and the job's status. The local
// RunPod endpoint scales from zero to one worker with a slow cold start.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gpuStateOf } from '../activities/gpu-job.js';
import { formatCost, writeReport } from '../activities/report.js';
import { describeState } from '../contract/describe.js';
import { TrainRequest, type PipelineProgress } from '../contract/pipeline.js';
import { report, status } from '../cli/inspect.js';
import { describeLogs, pipelineLogs } from '../cli/logs.js';
import type { Config } from '../lib/config.js';
import type { RunpodHealth } from '../lib/runpod-client.js';
import { getJson, listKeys, putBytes } from '../lib/s3.js';
import { progressQuery } from '../workflows/definitions.js';
import type { PublishingTrainLora } from '../workflows/index.js';
import { makeDataset } from './datasets.js';
import { startPipelineFixture, testConfig } from './harness.js';

let fixture: Awaited<ReturnType<typeof startPipelineFixture>>;
let tmp: typeof fixture.tmp;
let s3: typeof fixture.s3;
let gpu: typeof fixture.gpu;
let env: typeof fixture.env;
let dataset: string;
let config: Config;
const taskQueue = 'status-test';

beforeAll(async () => {
  fixture = await startPipelineFixture('status', {
    taskQueue,
    // No worker until a job comes; then one, after a 3 s cold start; at most one at a time.
    endpoint: { workers: undefined, minWorkers: 0, maxWorkers: 1, idleTimeoutMs: 120_000, faults: { coldStartDelayMs: 3_000 } },
    deps: { training: { checkpointEvery: 10, segmentSeconds: 600 } },
    worker: { maxHeartbeatThrottleInterval: '1 second' },
  });
  ({ tmp, s3, gpu, env } = fixture);
  dataset = await makeDataset(path.join(tmp.dir, 'dataset'), { images: 2, captioned: 2 });
  config = { ...testConfig, RUNPOD_API_BASE: gpu.endpoint.url, RUNPOD_API_KEY: 'test-key', RUNPOD_ENDPOINT_ID: gpu.endpoint.endpointId, LORAFLOW_S3_ENDPOINT: s3.endpoint };
});

afterAll(() => fixture?.stop());

const request = (steps: number, msPerStep: number) =>
  TrainRequest.parse({ name: 'honest', triggerWord: 'lfhonest', dataset: { path: dataset, fingerprint: 'b'.repeat(64) }, baseModel: 'tiny-sd', params: { steps, seed: msPerStep } });
const keyOf = (uri: string) => uri.replace(`s3://${s3.storage.bucket}/`, '');
const start = (req: TrainRequest) => env.client.workflow.start<PublishingTrainLora>('trainLora', { taskQueue, workflowId: `honest-${randomUUID()}`, args: [req] });

/** Polls the progress query, collecting every distinct state line, until `ok`. */
async function watchUntil(id: string, seen: Set<string>, ok: (p: PipelineProgress) => boolean, timeoutMs = 60_000): Promise<PipelineProgress> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = await env.client.workflow.getHandle(id).query(progressQuery);
    seen.add(describeState(p));
    if (ok(p)) return p;
    if (Date.now() > deadline) throw new Error(`timed out; seen ${JSON.stringify([...seen])}, last ${JSON.stringify(p)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('honest status', () => {
  it('tells cold start, waiting for capacity, training, a resumed lost worker and publishing apart', async () => {
    const a = await start(request(200, 50));
    const seenA = new Set<string>();
    // Scale from zero: the first job waits for a worker that is still starting.
    await watchUntil(a.workflowId, seenA, (p) => p.gpuState === 'cold-starting');
    expect(describeState(await a.query(progressQuery))).toMatch(/^train: GPU worker cold-starting \(GPU job .+\)$/);
    await watchUntil(a.workflowId, seenA, (p) => p.gpuState === 'running');

    // The only worker is busy: a second pipeline's job waits for capacity, and says so.
    const b = await start(request(5, 20));
    const seenB = new Set<string>();
    await watchUntil(b.workflowId, seenB, (p) => p.gpuState === 'waiting-for-capacity');
    const bStatus = await status(env.client, b.workflowId);
    expect(bStatus.state).toMatch(/^train: waiting for GPU capacity: all 1 workers busy \(GPU job .+\)$/);
    expect(bStatus.gpuStatus).toBe('IN_QUEUE');

    // A's worker dies mid-training: the pipeline says it is resuming, not queued.
    await watchUntil(a.workflowId, seenA, (p) => (p.step ?? 0) >= 25);
    process.kill(gpu.endpoint.workers().find((w) => w.state === 'running')!.pid!, 'SIGKILL');
    const resuming = await watchUntil(a.workflowId, seenA, (p) => p.gpuState === 'resuming');
    expect(describeState(resuming)).toMatch(/^train: GPU worker lost, resuming from the last checkpoint: .*(SIGKILL|exited)/);

    const [publishedA, publishedB] = await Promise.all([a.result(), b.result()]);
    expect(publishedA.uri).toContain('/loras/honest/');
    expect(publishedB.uri).toContain('/loras/honest/');
    await watchUntil(a.workflowId, seenA, (p) => p.stage === 'published');

    // The memo carries the one-line summary for the Web UI.
    const memo = (await a.describe()).memo as { summary?: string };
    expect(memo.summary).toBe(`honest: published ${publishedA.version} (${publishedA.uri})`);
    const states = [...seenA, ...seenB];
    expect(states.some((s) => /^training step \d+\/200/.test(s))).toBe(true);
    expect(states.every((s) => !/IN_QUEUE/.test(s))).toBe(true);

    // `loraflow logs`: every GPU job of A as the endpoint reports it.
    const logs = await pipelineLogs(env.client, config, a.workflowId, gpu.client);
    expect(logs.jobs.map((j) => j.status)).toEqual(['FAILED', 'COMPLETED']);
    expect(logs.jobs[1]!.executionMs).toBeGreaterThan(0);
    expect(logs.jobs[0]!.error).toMatch(/SIGKILL|exited/);
    expect(describeLogs(logs)).toMatch(/COMPLETED on w-\d+ \(waited [\d.]+s, ran [\d.]+s\)\s+trained to step 200/);
  });

  it('publishes a report with loss curve, samples, parameters, dataset and GPU cost; `report` writes it locally', async () => {
    const before = gpu.endpoint.ledger().length;
    const handle = await start({ ...request(20, 10), sampleEvery: 10 });
    const published = await handle.result();

    // Cost from the endpoint's timing fields of every job the run used, at the configured price.
    const ledger = gpu.endpoint.ledger().slice(before);
    const usage = published.usage!;
    expect(usage.jobs.map((j) => j.gpuJobId)).toEqual(ledger.map((e) => e.id));
    expect(usage).toMatchObject({ pricePerHour: 2.49, unknownJobs: 0 });
    expect(usage.gpuSeconds).toBeGreaterThan(0.1);
    expect(usage.cost).toBeCloseTo((usage.gpuSeconds * 2.49) / 3600, 6);
    const shown = await status(env.client, handle.workflowId);
    expect(shown.result?.usage?.cost).toBe(usage.cost);

    const prefix = keyOf(published.metadataUri).replace('metadata.json', 'report/');
    expect(published.reportUri).toBe(`s3://${s3.storage.bucket}/${prefix}index.html`);
    // The scripted worker's samples are not images: the report leaves them out and says so.
    expect(await listKeys(s3.storage, prefix)).toEqual(['cost.png', 'dataset.png', 'index.html', 'loss.png', 'parameters.png'].map((f) => prefix + f));

    // With real sample images the grid is there (the activity is idempotent: written again).
    const metadata = await getJson<{ samples: { step: number; uri: string }[] }>(s3.storage, keyOf(published.metadataUri));
    for (const sample of metadata.samples) {
      await putBytes(s3.storage, keyOf(sample.uri), await sharp({ create: { width: 64, height: 64, channels: 3, background: '#ff0000' } }).png().toBuffer(), 'image/png');
    }
    const manifestKey = (await getJson<{ dataset: { manifestSha256: string } }>(s3.storage, keyOf(published.metadataUri))).dataset.manifestSha256;
    const rewritten = (await new MockActivityEnvironment().run(writeReport, { storage: s3.storage, runpod: gpu.client, pollIntervalMs: 200 }, { metadataKey: keyOf(published.metadataUri), manifestKey: `manifests/${manifestKey}.json` })) as Awaited<ReturnType<typeof writeReport>>;
    expect(rewritten.files).toContain('samples.png');

    const out = path.join(tmp.dir, 'report-out');
    const written = await report(env.client, config, handle.workflowId, out);
    expect(written.index).toBe(path.join(out, 'index.html'));
    const html = readFileSync(written.index, 'utf8');
    for (const text of ['loss.png', 'samples.png', 'dataset.png', 'GPU seconds (billed)', formatCost(usage.cost), 'step 10, step 20', '2 images']) expect(html).toContain(text);
    expect(await sharp(path.join(out, 'loss.png')).metadata()).toMatchObject({ width: 640, height: 320, format: 'png' });
    expect(await sharp(path.join(out, 'samples.png')).metadata()).toMatchObject({ width: 512, height: 256 });
    expect(await sharp(path.join(out, 'dataset.png')).metadata()).toMatchObject({ width: 192, height: 96 });
  });

  it('maps job status and endpoint health to a state', () => {
    const health = (queue: string, workers: Record<string, number> = {}, lastWorkerFailure?: string): RunpodHealth => ({
      jobs: { completed: 0, failed: 0, inProgress: 0, inQueue: 1, retried: 0 },
      workers: { idle: 0, running: 0, ...workers },
      diagnosis: { queue, ...(lastWorkerFailure ? { lastWorkerFailure } : {}) },
    });
    const queued = { gpuJobId: 'j', gpuStatus: 'IN_QUEUE', failures: 0 };
    expect(gpuStateOf(queued, health('waiting-for-capacity', { running: 2 }))).toEqual({ gpuState: 'waiting-for-capacity', gpuDetail: 'all 2 workers busy' });
    expect(gpuStateOf(queued, health('cold-starting'))).toEqual({ gpuState: 'cold-starting' });
    expect(gpuStateOf(queued, health('workers-crashing', {}, 'worker w-1 exited with code 1'))).toEqual({ gpuState: 'worker-crashing', gpuDetail: 'worker w-1 exited with code 1' });
    expect(gpuStateOf(queued, health('no-workers'))).toEqual({ gpuState: 'waiting-for-capacity', gpuDetail: 'no workers available' });
    expect(gpuStateOf(queued, health('idle'))).toEqual({ gpuState: 'queued' });
    expect(gpuStateOf({ ...queued, failures: 1 }, health('cold-starting'), 'worker w-1 exited')).toEqual({ gpuState: 'resuming', gpuDetail: 'worker w-1 exited' });
    expect(gpuStateOf({ ...queued, gpuStatus: 'IN_PROGRESS' }, health('running'))).toEqual({ gpuState: 'running' });
    // The real service has no diagnosis: worker counts are all there is.
    const real = (workers: Record<string, number>): RunpodHealth => ({ jobs: { completed: 0, failed: 0, inProgress: 0, inQueue: 1, retried: 0 }, workers: { idle: 0, running: 0, ...workers } });
    expect(gpuStateOf(queued, real({ initializing: 1 }))).toEqual({ gpuState: 'cold-starting' });
    expect(gpuStateOf(queued, real({ unhealthy: 2 }))).toMatchObject({ gpuState: 'worker-crashing' });
    expect(gpuStateOf(queued, real({ running: 3 }))).toMatchObject({ gpuState: 'waiting-for-capacity' });

    const p: PipelineProgress = { stage: 'worker-crashing' as never, name: 'x', stageStartedAt: {}, updatedAt: '' };
    expect(describeState({ ...p, stage: 'publish' })).toBe('publishing');
    expect(describeState({ ...p, stage: 'train', gpuState: 'worker-crashing', gpuDetail: 'worker w-1 exited with code 1', gpuJobId: 'j1' })).toBe('train: GPU worker crashing: worker w-1 exited with code 1 (GPU job j1)');
    expect(describeState({ ...p, stage: 'caption', gpuState: 'running', gpuJobId: 'j2' })).toBe('captioning (GPU job j2)');
  });
});
