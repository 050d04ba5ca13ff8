// Honest status on the real Temporal dev server: the `progress` query, `loraflow status`, the memo
// and `loraflow logs` tell apart a worker cold-starting, waiting for GPU capacity, training and
// publishing, from the endpoint's health and the job's status. The local RunPod endpoint scales
// from zero to one worker with a slow cold start. (A lost worker's "resuming" is shown in
// test/workflow.test.ts; the mapping itself in test/unit/gpu.test.ts.)
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeReport } from '../activities/report.js';
import { report, status } from '../cli/inspect.js';
import { describeLogs, pipelineLogs } from '../cli/logs.js';
import { describeState } from '../contract/describe.js';
import { type PipelineProgress, TrainRequest } from '../contract/pipeline.js';
import type { Config } from '../lib/config.js';
import { keyOfUri } from '../lib/keys.js';
import { formatCost } from '../lib/pricing.js';
import { getJson, listKeys, putBytes } from '../lib/s3.js';
import { makeDataset } from '../testkit/datasets.js';
import { type PipelineFixture, startPipelineFixture, testConfig } from '../testkit/services.js';
import { until } from '../testkit/wait.js';
import { progressQuery } from '../workflows/definitions.js';

let f: PipelineFixture;
let dataset: string;
let config: Config;
const taskQueue = 'status-test';

beforeAll(async () => {
  // No worker until a job comes; then one, after a 3 s cold start; at most one at a time.
  f = await startPipelineFixture('status', { endpoint: { workers: undefined, minWorkers: 0, maxWorkers: 1, idleTimeoutMs: 120_000, faults: { coldStartDelayMs: 3_000 } } });
  await f.serve(taskQueue);
  dataset = await makeDataset(path.join(f.tmp.dir, 'dataset'), { images: 2, captioned: 2 });
  config = { ...testConfig, RUNPOD_API_BASE: f.gpu.endpoint.url, RUNPOD_API_KEY: 'test-key', RUNPOD_ENDPOINT_ID: f.gpu.endpoint.endpointId, LORAFLOW_S3_ENDPOINT: f.s3.endpoint };
});

afterAll(() => f?.stop());

const request = (steps: number, msPerStep: number, sampleEvery = 0) =>
  TrainRequest.parse({ name: 'honest', dataset: { path: dataset, fingerprint: 'b'.repeat(64) }, training: { triggerWord: 'lfhonest', baseModel: 'tiny-sd', params: { steps, seed: msPerStep }, sampleEvery } });

/** Polls `loraflow status` (the query's state, the heartbeat's step), collecting every distinct state line, until `ok`. */
const watchUntil = (id: string, seen: Set<string>, ok: (p: PipelineProgress) => boolean, timeoutMs = 60_000) =>
  until(
    async () => {
      const p = await status(f.env.client, id);
      seen.add(p.state);
      return p;
    },
    ok,
    timeoutMs,
  );

describe('honest status', () => {
  it('tells cold start, waiting for capacity, training and publishing apart', async () => {
    const a = await f.start(taskQueue, request(150, 50));
    const seenA = new Set<string>();
    // Scale from zero: the first job waits for a worker that is still starting.
    await watchUntil(a.workflowId, seenA, (p) => p.gpuState === 'cold-starting');
    expect(describeState(await a.query(progressQuery))).toMatch(/^train: GPU worker cold-starting \(GPU job .+\)$/);
    await watchUntil(a.workflowId, seenA, (p) => p.gpuState === 'running');

    // The only worker is busy: a second pipeline's job waits for capacity, and says so.
    const b = await f.start(taskQueue, request(5, 20));
    const seenB = new Set<string>();
    await watchUntil(b.workflowId, seenB, (p) => p.gpuState === 'waiting-for-capacity');
    const bStatus = await status(f.env.client, b.workflowId);
    expect(bStatus.state).toMatch(/^train: waiting for GPU capacity: all 1 workers busy \(GPU job .+\)$/);
    expect(bStatus.gpuStatus).toBe('IN_QUEUE');
    await watchUntil(a.workflowId, seenA, (p) => (p.step ?? 0) >= 10);

    const [publishedA, publishedB] = await Promise.all([a.result(), b.result()]);
    expect(publishedA.uri).toContain('/loras/honest/');
    expect(publishedB.uri).toContain('/loras/honest/');
    await watchUntil(a.workflowId, seenA, (p) => p.stage === 'published');

    // The memo carries the one-line summary for the Web UI.
    const memo = (await a.describe()).memo as { summary?: string };
    expect(memo.summary).toBe(`honest: published ${publishedA.version} (${publishedA.uri})`);
    const states = [...seenA, ...seenB];
    expect(states.some((s) => /^training step \d+\/150/.test(s))).toBe(true);
    expect(states.every((s) => !/IN_QUEUE/.test(s))).toBe(true);

    // `loraflow logs`: every GPU job of A as the endpoint reports it.
    const logs = await pipelineLogs(f.env.client, config, a.workflowId, f.gpu.client);
    expect(logs.jobs.map((j) => j.status)).toEqual(['COMPLETED']);
    expect(logs.jobs[0]!.executionMs).toBeGreaterThan(0);
    expect(describeLogs(logs)).toMatch(/COMPLETED on w-\d+ \(waited [\d.]+s, ran [\d.]+s\)\s+trained to step 150/);
  });

  it('publishes a report with loss curve, samples, parameters, dataset and GPU cost; `report` writes it locally', async () => {
    const before = f.gpu.endpoint.ledger().length;
    const handle = await f.start(taskQueue, request(20, 10, 10));
    const published = await handle.result();

    // Cost from the endpoint's timing fields of every job the run used, at the configured price.
    const ledger = f.gpu.endpoint.ledger().slice(before);
    const usage = published.usage!;
    expect(usage.jobs.map((j) => j.gpuJobId)).toEqual(ledger.map((e) => e.id));
    expect(usage).toMatchObject({ pricePerHour: 2.49, unknownJobs: 0 });
    expect(usage.gpuSeconds).toBeGreaterThan(0.1);
    expect(usage.cost).toBeCloseTo((usage.gpuSeconds * 2.49) / 3600, 6);
    const shown = await status(f.env.client, handle.workflowId);
    expect(shown.result?.usage?.cost).toBe(usage.cost);

    const prefix = keyOfUri(published.metadataUri).replace('metadata.json', 'report/');
    expect(published.reportUri).toBe(`s3://${f.s3.storage.bucket}/${prefix}index.html`);
    // The scripted worker's samples are not images: the report leaves them out and says so.
    expect(await listKeys(f.s3.storage, prefix)).toEqual(['cost.png', 'dataset.png', 'index.html', 'loss.png', 'parameters.png'].map((f) => prefix + f));

    // With real sample images the grid is there (the activity is idempotent: written again).
    const metadata = await getJson<{ samples: { step: number; uri: string }[] }>(f.s3.storage, keyOfUri(published.metadataUri));
    for (const sample of metadata.samples) {
      await putBytes(f.s3.storage, keyOfUri(sample.uri), await sharp({ create: { width: 64, height: 64, channels: 3, background: '#ff0000' } }).png().toBuffer(), 'image/png');
    }
    const manifestKey = (await getJson<{ dataset: { manifestSha256: string } }>(f.s3.storage, keyOfUri(published.metadataUri))).dataset.manifestSha256;
    const rewritten = (await new MockActivityEnvironment().run(writeReport, f.deps(), { metadataKey: keyOfUri(published.metadataUri), manifestKey: `manifests/${manifestKey}.json` })) as Awaited<ReturnType<typeof writeReport>>;
    expect(rewritten.files).toContain('samples.png');

    const out = path.join(f.tmp.dir, 'report-out');
    const written = await report(f.env.client, config, handle.workflowId, out);
    expect(written.index).toBe(path.join(out, 'index.html'));
    const html = readFileSync(written.index, 'utf8');
    for (const text of ['loss.png', 'samples.png', 'dataset.png', 'GPU seconds (billed)', formatCost(usage.cost), 'step 10, step 20', '2 images']) expect(html).toContain(text);
    expect(await sharp(path.join(out, 'loss.png')).metadata()).toMatchObject({ width: 640, height: 320, format: 'png' });
    // One prompt (a row) by steps 10 and 20, beside the prompt labels and under the step labels.
    expect(await sharp(path.join(out, 'samples.png')).metadata()).toMatchObject({ width: 200 + 2 * 160, height: 28 + 160 });
    expect(await sharp(path.join(out, 'dataset.png')).metadata()).toMatchObject({ width: 192, height: 96 });
  });
});
