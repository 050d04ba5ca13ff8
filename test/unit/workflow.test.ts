// trainLora's story on Temporal's time-skipping test server, with plain stub activities: every
// outcome (published, skipped, failed, cancelled in each stage) and what an optional step's
// failure does. Retry backoffs (the report's, the Hub push's) pass in skipped time, not real time.
import { randomUUID } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { ActivityFailure, ApplicationFailure, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import proto from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Activities } from '../../activities/index.js';
import { GenerateRequest, type GenerationResult, type PipelineProgress, type Stage, TrainRequest } from '../../contract/pipeline.js';
import { toolchain } from '../../lib/toolchain.js';
import { createWorkers } from '../../lib/workers.js';
import { recordHistory } from '../../testkit/histories.js';
import { workflowCode } from '../../testkit/services.js';
import { continueUpdate, progressQuery, SEARCH_ATTRIBUTES } from '../../workflows/definitions.js';
import type { PublishingTrainLora } from '../../workflows/index.js';

async function timeSkippingServer(): Promise<TestWorkflowEnvironment> {
  const server = await TestWorkflowEnvironment.createTimeSkipping({ server: { executable: { type: 'existing-path', path: toolchain.temporalTestServer() } } });
  await server.connection.operatorService.addSearchAttributes({
    namespace: server.namespace ?? 'default',
    searchAttributes: Object.fromEntries(SEARCH_ATTRIBUTES.map((key) => [key.name, proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD])),
  });
  return server;
}

let env: TestWorkflowEnvironment;
beforeAll(async () => {
  env = await timeSkippingServer();
});
afterAll(() => env?.teardown());

const MANIFEST = 'a'.repeat(64);
const request = (extra: Partial<TrainRequest> = {}) =>
  TrainRequest.parse({ name: 'stub', dataset: { path: '/data/stub', fingerprint: 'f'.repeat(64) }, training: { triggerWord: 'lfstub', baseModel: 'tiny-sd', params: { steps: 10 } }, ...extra });

/** Activities that answer at once, recording each call; `overrides` replace some. */
function stubs(overrides: Partial<Activities> = {}) {
  const calls: { name: keyof Activities; input: unknown }[] = [];
  const base: Activities = {
    ingestDataset: async () => ({ manifestKey: `manifests/${MANIFEST}.json`, manifestSha256: MANIFEST, imageCount: 2, sidecarCaptions: 0, duplicatesDropped: 0 }),
    latestPublished: async () => ({}),
    resolveInitFrom: async () => ({}),
    captionDataset: async () => ({ captionsKey: 'runs/x/captions.json', sidecar: 0, gpuCaptioned: 2, cached: 0, gpuJobId: 'caption-job' }),
    trainOnGpu: async () => ({
      gpuJobId: 'train-job',
      gpuJobIds: ['train-job'],
      stagingKey: 'runs/x/lora.safetensors',
      lora: { sha256: 'b'.repeat(64), bytes: 10 },
      samples: [],
      metrics: { steps: 10, finalLoss: 0.1, lossCurve: [0.2, 0.1], seconds: {}, device: 'cpu' },
    }),
    publishLora: async ({ version }) => ({ uri: `s3://b/loras/stub/${version}/lora.safetensors`, metadataUri: `s3://b/loras/stub/${version}/metadata.json`, version, sha256: 'b'.repeat(64), bytes: 10 }),
    writeReport: async ({ metadataKey }) => ({ reportUri: `s3://b/${metadataKey.replace('metadata.json', 'report/index.html')}`, files: ['index.html'] }),
    pushToHub: async () => ({ outcome: 'not-configured' }),
    cancelGpuJobs: async () => ({ cancelled: [] }),
    cancelOrphanGpuJobs: async () => ({ checked: 0, cancelled: [], ended: 0, unconfirmed: [] }),
    watchTraining: async () => ({ events: [], snapshot: { stage: 'published', progressAt: 0 }, closed: true }),
    deliverWebhook: async () => ({ delivered: true }),
    watchSchedule: async () => ({ started: [], ended: true }),
    resolveLoras: async () => ({ loras: [] }),
    generateOnGpu: async () => {
      throw new Error('not a training stage');
    },
    storeGeneration: async () => {
      throw new Error('not a training stage');
    },
  };
  const activities = Object.fromEntries(
    Object.entries({ ...base, ...overrides }).map(([name, fn]) => [name, (input: never) => (calls.push({ name: name as keyof Activities, input }), (fn as (i: never) => unknown)(input))]),
  ) as Activities;
  return { activities, calls, called: (name: keyof Activities) => calls.filter((c) => c.name === name) };
}

/** Starts one run of `req` while workers with these activities poll; `during` runs before the result is awaited. */
async function run(activities: Activities, req: TrainRequest, during?: (handle: WorkflowHandle<PublishingTrainLora>) => Promise<void>, server = env) {
  const env = server;
  const taskQueue = `unit-${randomUUID()}`;
  const workers = await createWorkers({ connection: env.nativeConnection, taskQueue, ...workflowCode(), activities, maxGpuJobs: 1, maxHeartbeatThrottleInterval: '1 second' });
  return workers.runUntil(
    (async () => {
      const handle = await env.client.workflow.start<PublishingTrainLora>('trainLora', { taskQueue, workflowId: `unit-${randomUUID()}`, args: [req] });
      await during?.(handle);
      const outcome = await handle.result().then(
        (value) => ({ value, error: undefined }),
        (error: unknown) => ({ value: undefined, error }),
      );
      return { handle, ...outcome, progress: await handle.query(progressQuery) };
    })(),
  );
}

/** An activity that runs until cancelled (heartbeating, so the cancel reaches it), then rethrows. */
const untilCancelled = (seen: { cancelled: boolean }) => async () => {
  try {
    for (;;) {
      Context.current().heartbeat();
      await Context.current().sleep(100);
    }
  } catch (err) {
    seen.cancelled = true;
    throw err;
  }
};

const waitForStage = async (handle: WorkflowHandle, stage: Stage) => {
  for (let i = 0; i < 200; i++) {
    if ((await handle.query(progressQuery)).stage === stage) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`never reached ${stage}`);
};

const cause = (err: unknown) => ((err as WorkflowFailedError).cause as ActivityFailure).cause as ApplicationFailure;

describe('trainLora (stub activities, time-skipping server)', () => {
  it('publishes: every stage in order, the report on the result, no cleanup', async () => {
    const s = stubs();
    const { value, progress } = await run(s.activities, request());
    expect(value?.reportUri).toMatch(/\/report\/index\.html$/);
    expect(value).not.toHaveProperty('hub');
    expect(Object.keys(progress.stageStartedAt)).toEqual(['ingest', 'caption', 'train', 'publish', 'published']);
    expect(s.calls.map((c) => c.name)).toEqual(['ingestDataset', 'captionDataset', 'trainOnGpu', 'publishLora', 'writeReport', 'pushToHub']);
    // The training settings travel whole from the request to the train stage.
    expect(s.called('trainOnGpu')[0]!.input).toMatchObject({ training: request().training, manifestKey: `manifests/${MANIFEST}.json` });
  });

  it('skips a scheduled run whose dataset is the latest version’s, paying for no GPU stage', async () => {
    const latest = { name: 'stub', version: 'v1', manifestSha256: MANIFEST, uri: 's3://b/loras/stub/v1/lora.safetensors', metadataUri: 's3://b/m' };
    const s = stubs({ latestPublished: async () => ({ latest }) });
    const { value, progress } = await run(s.activities, request({ onlyIfChanged: true }));
    expect(value).toEqual({ skipped: true, reason: 'dataset unchanged', manifestSha256: MANIFEST, latestVersion: 'v1', latestUri: latest.uri });
    expect(progress.stage).toBe('skipped');
    expect(s.called('captionDataset')).toHaveLength(0);
    expect(s.called('trainOnGpu')).toHaveLength(0);
  });

  it('a caption review pauses between caption and train until `continue`', async () => {
    const s = stubs();
    const { value, progress, handle } = await run(s.activities, request({ captions: { review: true } }), async (handle) => {
      await waitForStage(handle, 'awaiting-captions');
      expect((await handle.query(progressQuery)).captionReview).toEqual({ manifestKey: `manifests/${MANIFEST}.json`, captionsKey: 'runs/x/captions.json', triggerWord: 'lfstub' });
      expect(s.called('trainOnGpu')).toHaveLength(0);
      await handle.executeUpdate(continueUpdate);
    });
    expect(value?.uri).toBeDefined();
    expect(Object.keys(progress.stageStartedAt)).toEqual(['ingest', 'caption', 'awaiting-captions', 'train', 'publish', 'published']);
    await recordHistory(handle, 'caption-review');
  });

  it('extend skips ingest and caption: it trains on the parent version’s images and captions from its checkpoint', async () => {
    const dataset = { manifestKey: 'manifests/p.json', manifestSha256: 'p'.repeat(64), imageCount: 2, sidecarCaptions: 2, duplicatesDropped: 0 };
    const weights = { key: 'loras/stub/v1/checkpoint.ckpt', kind: 'checkpoint' as const, sha256: 'c'.repeat(64) };
    const parent = { name: 'stub', version: 'v1', mode: 'continue' as const, sha256: 'b'.repeat(64) };
    const s = stubs({ resolveInitFrom: async () => ({ parent, weights, dataset, captions: { captionsKey: 'loras/stub/v1/captions.json', sidecar: 2, gpuCaptioned: 0 } }) });
    const { value } = await run(s.activities, request({ initFrom: { name: 'stub', version: 'v1', mode: 'continue' } }));
    expect(value?.uri).toBeDefined();
    expect(s.calls.map((c) => c.name)).toEqual(['resolveInitFrom', 'trainOnGpu', 'publishLora', 'writeReport', 'pushToHub']);
    expect(s.called('trainOnGpu')[0]!.input).toMatchObject({ manifestKey: 'manifests/p.json', captionsKey: 'loras/stub/v1/captions.json', initFrom: weights });
    expect(s.called('publishLora')[0]!.input).toMatchObject({ initFrom: parent });
  });

  it('trains a scheduled run whose dataset changed', async () => {
    const latest = { name: 'stub', version: 'v1', manifestSha256: 'c'.repeat(64), uri: 's3://b/x', metadataUri: 's3://b/m' };
    const s = stubs({ latestPublished: async () => ({ latest }) });
    const { progress } = await run(s.activities, request({ onlyIfChanged: true }));
    expect(progress.stage).toBe('published');
    expect(s.called('trainOnGpu')).toHaveLength(1);
  });

  it('fails with the GPU stage’s failure and cancels the run’s GPU jobs', async () => {
    const s = stubs({
      trainOnGpu: async () => {
        throw ApplicationFailure.nonRetryable('GPU job j failed: out of memory', 'GpuOOM');
      },
    });
    const { error, progress, handle } = await run(s.activities, request());
    expect(error).toBeInstanceOf(WorkflowFailedError);
    expect(cause(error)).toMatchObject({ type: 'GpuOOM', message: 'GPU job j failed: out of memory' });
    expect(progress).toMatchObject({ stage: 'failed', error: 'GPU job j failed: out of memory' });
    expect(s.called('cancelGpuJobs').map((c) => c.input)).toEqual([{ runKey: `${handle.workflowId}/${handle.firstExecutionRunId}` }]);
    expect(s.called('publishLora')).toHaveLength(0);
  });

  for (const [stage, activity] of [
    ['ingest', 'ingestDataset'],
    ['caption', 'captionDataset'],
    ['train', 'trainOnGpu'],
    ['publish', 'publishLora'],
  ] as const) {
    it(`a cancel during ${stage} cancels its activity, cleans up and ends cancelled`, async () => {
      const seen = { cancelled: false };
      const s = stubs({ [activity]: untilCancelled(seen) });
      // A run that does not wait for its cancelled activity (ingest, publish) leaves the test
      // server's clock locked for good: those get a server of their own.
      const server = stage === 'caption' || stage === 'train' ? env : await timeSkippingServer();
      try {
        const { error, progress, handle } = await run(s.activities, request(), async (h) => {
          await waitForStage(h, stage);
          await new Promise((r) => setTimeout(r, 200)); // the activity is running
          await h.cancel();
        }, server);
        expect(error).toBeInstanceOf(WorkflowFailedError);
        expect((await handle.describe()).status.name).toBe('CANCELLED');
        expect(progress.stage).toBe('cancelled');
        expect(seen.cancelled).toBe(true);
      } finally {
        if (server !== env) await server.teardown();
      }
      expect(s.called('cancelGpuJobs')).toHaveLength(1);
    });
  }

  it('publishes without a report when the report keeps failing (three tries)', async () => {
    const s = stubs({
      writeReport: async () => {
        throw new Error('sharp exploded');
      },
    });
    const { value, progress } = await run(s.activities, request());
    expect(progress.stage).toBe('published');
    expect(value).not.toHaveProperty('reportUri');
    expect(s.called('writeReport')).toHaveLength(3);
    expect(s.called('cancelGpuJobs')).toHaveLength(0);
  });

  it('publishes with the Hub failure on the result when the push keeps failing (five tries, minutes of backoff skipped)', async () => {
    const s = stubs({
      pushToHub: async () => {
        throw ApplicationFailure.retryable('the Hugging Face Hub failed committing (HTTP 503)', 'HubUnavailable');
      },
    });
    const { value, progress } = await run(s.activities, request());
    expect(progress.stage).toBe('published');
    expect(value?.hub).toEqual({ outcome: 'failed', error: 'the Hugging Face Hub failed committing (HTTP 503)' });
    expect(s.called('pushToHub')).toHaveLength(5);
  });

  it('records a Hub push on the result', async () => {
    const s = stubs({ pushToHub: async () => ({ outcome: 'pushed', repo: 'org/stub', url: 'https://hub/org/stub', revision: 'abc' }) });
    const { value } = await run(s.activities, request());
    expect(value?.hub).toEqual({ outcome: 'pushed', repo: 'org/stub', url: 'https://hub/org/stub', revision: 'abc' });
  });
});

describe('deliverWebhooks', () => {
  it('delivers every event in order, retrying each until a receiver that is down takes it (backoff skipped)', async () => {
    const script = [['training.started', 'training.stage_changed'], ['training.progress'], [], ['training.published']] as const;
    let watched = 0;
    let refused = 0;
    const delivered: string[] = [];
    const s = stubs({
      watchTraining: async () => {
        const types = script[watched++]!;
        return { events: types.map((type) => ({ type, trainingId: 't', stage: 'train', status: 'RUNNING', at: '' })), snapshot: { stage: 'train', progressAt: watched }, closed: watched === script.length };
      },
      // Down for the first 8 attempts (several minutes of backoff), then up.
      deliverWebhook: async ({ seq, event }) => {
        if (refused++ < 8) throw ApplicationFailure.retryable('connect ECONNREFUSED', 'WebhookNotDelivered');
        delivered.push(`${seq}:${event.type}`);
        return { delivered: true };
      },
    });
    const taskQueue = `unit-${randomUUID()}`;
    const workers = await createWorkers({ connection: env.nativeConnection, taskQueue, ...workflowCode(), activities: s.activities, maxGpuJobs: 1 });
    const result = await workers.runUntil(env.client.workflow.execute('deliverWebhooks', { taskQueue, workflowId: `unit-${randomUUID()}`, args: [{ trainingId: 't' }] }));
    expect(result).toEqual({ delivered: 4 });
    expect(delivered).toEqual(['1:training.started', '2:training.stage_changed', '3:training.progress', '4:training.published']);
    // Each watch after the first is handed the last snapshot, so it reports only what changed.
    expect(s.called('watchTraining').map((c) => (c.input as { last?: { progressAt: number } }).last?.progressAt)).toEqual([undefined, 1, 2, 3]);
  });
});

describe('scheduleWebhooks', () => {
  it("hands each new run of the schedule to a delivery once, carrying what it saw, and ends when the schedule is gone", async () => {
    // What each poll finds: a run, nothing new, a second run (the first still listed), then no schedule.
    const script = [['retrain-x-1'], [], ['retrain-x-2'], []] as const;
    let polls = 0;
    const s = stubs({
      watchSchedule: async ({ seen }) => {
        const runs = script[polls++];
        if (!runs) return { started: [], ended: true };
        return { started: runs.filter((r) => !seen.includes(r)), ended: false };
      },
    });
    const taskQueue = `unit-${randomUUID()}`;
    const workers = await createWorkers({ connection: env.nativeConnection, taskQueue, ...workflowCode(), activities: s.activities, maxGpuJobs: 1 });
    const result = await workers.runUntil(env.client.workflow.execute('scheduleWebhooks', { taskQueue, workflowId: `unit-${randomUUID()}`, args: [{ scheduleId: 'retrain-x' }] }));
    expect(result).toEqual({ runs: 2 });
    // Each poll is told the runs already handed over, so none is started twice.
    expect(s.called('watchSchedule').map((c) => (c.input as { seen: string[] }).seen)).toEqual([[], ['retrain-x-1'], ['retrain-x-1'], ['retrain-x-1', 'retrain-x-2'], ['retrain-x-1', 'retrain-x-2']]);
  });
});

describe('generateImages (stub activities, time-skipping server)', () => {
  const lora = { name: 'stub', version: 'v1', key: 'loras/stub/v1/lora.safetensors', sha256: 'b'.repeat(64), baseModel: 'tiny-sd', weight: 1 };
  const generation = (generateOnGpu: Activities['generateOnGpu']) =>
    stubs({
      resolveLoras: async () => ({ loras: [lora] }),
      generateOnGpu,
      storeGeneration: async ({ id }) => ({ id, uri: 's3://b/loras/stub/v1/generations/x/', images: [] }) as unknown as GenerationResult,
    });
  const start = async (activities: Activities, during?: (handle: WorkflowHandle) => Promise<void>) => {
    const taskQueue = `unit-${randomUUID()}`;
    const workers = await createWorkers({ connection: env.nativeConnection, taskQueue, ...workflowCode(), activities, maxGpuJobs: 1, maxHeartbeatThrottleInterval: '1 second' });
    return workers.runUntil(
      (async () => {
        const req = GenerateRequest.parse({ loras: [{ name: 'stub', version: 'v1' }], prompts: ['lfstub'] });
        const handle = await env.client.workflow.start('generateImages', { taskQueue, workflowId: `unit-gen-${randomUUID()}`, args: [req] });
        await during?.(handle);
        const error = await handle.result().then(() => undefined, (err: unknown) => err);
        return { handle, error };
      })(),
    );
  };

  it('resolves, generates, stores; no cleanup', async () => {
    const s = generation(async () => ({ gpuJobId: 'gen-job', gpuJobIds: ['gen-job'], images: [], contactSheet: { sha256: 'c'.repeat(64), key: 'k' }, metrics: { width: 64, height: 64, seconds: {}, device: 'cpu', warm: true }, usage: { jobs: [], gpuSeconds: 0, queueSeconds: 0, unknownJobs: 0, pricePerHour: 0, cost: 0 } }));
    const { handle, error } = await start(s.activities);
    expect(error).toBeUndefined();
    expect(s.calls.map((c) => c.name)).toEqual(['resolveLoras', 'generateOnGpu', 'storeGeneration']);
    await recordHistory(handle, 'generated');
  });

  it('a cancel during the GPU job cancels it, cleans up and ends cancelled', async () => {
    const seen = { cancelled: false };
    const s = generation(untilCancelled(seen) as never);
    const { handle, error } = await start(s.activities, async (h) => {
      for (let i = 0; i < 200 && !s.called('generateOnGpu').length; i++) await new Promise((r) => setTimeout(r, 25));
      await h.cancel();
    });
    expect(error).toBeInstanceOf(WorkflowFailedError);
    expect(seen.cancelled).toBe(true);
    expect(s.called('cancelGpuJobs')).toHaveLength(1);
    await recordHistory(handle, 'generate-cancelled');
  });
});
