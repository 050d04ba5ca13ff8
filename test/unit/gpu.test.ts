// The pure parts of a GPU stage: what a job's status and the endpoint's health mean, how the
// worker's errors are classed, which steps get samples, how segment metrics merge, the /run limit.
import { describe, expect, it } from 'vitest';
import { withTrigger } from '../../activities/caption.js';
import { type EndpointView, gpuStateOf } from '../../activities/gpu-progress.js';
import { classify, timingOf } from '../../activities/gpu-result.js';
import { mergeMetrics, stepsToSample } from '../../activities/train.js';
import { describeState } from '../../contract/describe.js';
import type { PipelineProgress } from '../../contract/pipeline.js';
import { sha256 } from '../../lib/hash.js';
import { RunpodClient, RunpodJobStatus, RunpodPayloadTooLarge } from '../../lib/runpod-client.js';

/** runpod-local's opt-in diagnosis. */
const diagnosed = (queue: string, lastWorkerFailure?: string): EndpointView => ({
  health: { jobs: { completed: 0, failed: 0, inProgress: 0, inQueue: 1, retried: 0 }, workers: { idle: 0, running: 0 }, diagnosis: { queue, ...(lastWorkerFailure ? { lastWorkerFailure } : {}) } },
});
/** What the real service tells: /health's documented counts, the REST API's worker states and max workers. */
const service = (workers: Partial<Record<'running' | 'idle' | 'initializing' | 'throttled' | 'unhealthy', number>>, max?: number): EndpointView => {
  const summary = { running: 0, idle: 0, initializing: 0, throttled: 0, unhealthy: 0, total: 0, ...workers };
  return {
    health: { jobs: { completed: 0, failed: 0, inProgress: 0, inQueue: 1, retried: 0 }, workers: { idle: summary.idle, running: summary.running } },
    workers: { summary },
    ...(max !== undefined ? { config: { workers: { max } } } : {}),
  };
};
const queued = { gpuJobId: 'j', gpuStatus: 'IN_QUEUE', failures: 0 };

describe('gpuStateOf', () => {
  it("reads the real service's documented fields: the REST API's worker states and max workers", () => {
    expect(gpuStateOf(queued, service({ initializing: 1 }))).toEqual({ gpuState: 'cold-starting' });
    expect(gpuStateOf(queued, service({ unhealthy: 2 }))).toEqual({ gpuState: 'worker-crashing', gpuDetail: '2 unhealthy workers' });
    expect(gpuStateOf(queued, service({ running: 3 }, 3))).toEqual({ gpuState: 'waiting-for-capacity', gpuDetail: 'all 3 workers busy' });
    expect(gpuStateOf(queued, service({ throttled: 1 }))).toMatchObject({ gpuState: 'waiting-for-capacity' });
    expect(gpuStateOf(queued, service({}, 0))).toEqual({ gpuState: 'waiting-for-capacity', gpuDetail: 'endpoint has no workers allowed (max workers 0)' });
    expect(gpuStateOf(queued, service({ idle: 1 }))).toEqual({ gpuState: 'queued' });
    expect(gpuStateOf(queued)).toEqual({ gpuState: 'queued' });
  });
  it('says resuming after a lost job, or when the service queued the job again after its worker died', () => {
    expect(gpuStateOf({ ...queued, failures: 1 }, service({ initializing: 1 }), 'worker w-1 exited')).toEqual({ gpuState: 'resuming', gpuDetail: 'worker w-1 exited' });
    expect(gpuStateOf({ ...queued, retried: true }, service({ initializing: 1 }))).toEqual({ gpuState: 'resuming', gpuDetail: 'the endpoint is running the job again after its worker was lost' });
  });
  it('reads running or finished from the status alone (RUNNING is IN_PROGRESS)', () => {
    expect(gpuStateOf({ ...queued, gpuStatus: 'IN_PROGRESS' })).toEqual({ gpuState: 'running' });
    expect(gpuStateOf({ ...queued, gpuStatus: 'RUNNING' })).toEqual({ gpuState: 'running' });
    expect(gpuStateOf({ ...queued, gpuStatus: 'COMPLETED' })).toEqual({ gpuState: 'finished' });
  });
  it("adds runpod-local's opt-in diagnosis where it has one", () => {
    expect(gpuStateOf(queued, diagnosed('workers-crashing', 'worker w-1 exited with code 1'))).toEqual({ gpuState: 'worker-crashing', gpuDetail: 'worker w-1 exited with code 1' });
    expect(gpuStateOf(queued, diagnosed('no-workers'))).toEqual({ gpuState: 'waiting-for-capacity', gpuDetail: 'no workers available' });
    expect(gpuStateOf(queued, diagnosed('cold-starting'))).toEqual({ gpuState: 'cold-starting' });
  });
});

describe('describeState', () => {
  const p: PipelineProgress = { stage: 'queued', name: 'x', stageStartedAt: {}, updatedAt: '' };
  it('reads as one honest line, never a bare IN_QUEUE', () => {
    expect(describeState({ ...p, stage: 'publish' })).toBe('publishing');
    expect(describeState({ ...p, stage: 'train', gpuState: 'worker-crashing', gpuDetail: 'worker w-1 exited with code 1', gpuJobId: 'j1' })).toBe('train: GPU worker crashing: worker w-1 exited with code 1 (GPU job j1)');
    expect(describeState({ ...p, stage: 'caption', gpuState: 'running', gpuJobId: 'j2' })).toBe('captioning (GPU job j2)');
    expect(describeState({ ...p, stage: 'train', gpuState: 'running', gpuJobId: 'j3', phase: 'training', step: 5, totalSteps: 10 })).toBe('training step 5/10 (GPU job j3)');
    expect(describeState({ ...p, stage: 'train', gpuState: 'waiting-for-capacity', gpuDetail: 'all 1 workers busy', gpuJobId: 'j4' })).toBe('train: waiting for GPU capacity: all 1 workers busy (GPU job j4)');
    expect(describeState({ ...p, stage: 'failed', error: 'boom' })).toBe('failed: boom');
  });
});

describe('job results', () => {
  it('reads a job state it does not know instead of failing on it', () => {
    expect(RunpodJobStatus.parse({ id: 'j', status: 'SOMETHING_NEW' }).status).toBe('SOMETHING_NEW');
  });
  it('classes GPU errors by their tag; anything untagged is INTERNAL, with presigned query strings stripped', () => {
    expect(classify('[CRASHED] claim: started 5 times')).toEqual({ cls: 'CRASHED', message: 'claim: started 5 times' });
    expect(classify('[OOM] CUDA out of memory')).toEqual({ cls: 'OOM', message: 'CUDA out of memory' });
    expect(classify('[CLAIMED] claim: taken')).toEqual({ cls: 'CLAIMED', message: 'claim: taken' });
    expect(classify(JSON.stringify({ error_type: "<class 'ValueError'>", error_message: 'boom' }))).toEqual({ cls: 'INTERNAL', message: "<class 'ValueError'>: boom" });
    expect(classify('worker w-1 exited with signal SIGKILL').cls).toBe('INTERNAL');
    expect(classify('[TRANSIENT] GET http://s3/b/k.png?X-Amz-Signature=abc failed')).toEqual({ cls: 'TRANSIENT', message: 'GET http://s3/b/k.png?<redacted> failed' });
  });
  it('reads the billed timing and the device the worker reported', () => {
    expect(timingOf(RunpodJobStatus.parse({ id: 'j', status: 'COMPLETED', delayTime: 1200, executionTime: 3400, output: { metrics: { device: 'cuda:NVIDIA H100' } } }))).toEqual({
      gpuJobId: 'j',
      status: 'COMPLETED',
      gpu: 'cuda:NVIDIA H100',
      delayMs: 1200,
      executionMs: 3400,
    });
    expect(timingOf(RunpodJobStatus.parse({ id: 'j', status: 'FAILED', delayTime: null }))).toEqual({ gpuJobId: 'j', status: 'FAILED' });
  });
});

describe('training pieces', () => {
  it('samples every N steps and always the last', () => {
    expect(stepsToSample(30, 10)).toEqual([10, 20, 30]);
    expect(stepsToSample(25, 10)).toEqual([10, 20, 25]);
    expect(stepsToSample(25, 0)).toEqual([25]);
  });
  it('merges segment metrics into one training', () => {
    const merged = mergeMetrics([
      { steps: 10, finalLoss: 0.5, lossCurve: [1, 0.5], seconds: { load: 2, training: 10 }, device: 'cpu', peakMemoryBytes: 5 },
      { steps: 12, finalLoss: 0.25, lossCurve: [1, 0.5, 0.25], seconds: { load: 1, training: 9 }, device: 'cpu', peakMemoryBytes: 7 },
    ]);
    // The last job's curve already covers the whole training (the history travels in checkpoints).
    expect(merged).toEqual({ steps: 12, stepsPaid: 22, finalLoss: 0.25, lossCurve: [1, 0.5, 0.25], seconds: { load: 3, training: 19 }, device: 'cpu', peakMemoryBytes: 7 });
  });
  it('puts the trigger word first in a caption, exactly once', () => {
    expect(withTrigger('lfx', 'a dog, lfx, on grass')).toBe('lfx, a dog, on grass');
    expect(withTrigger('lfx', 'lfx')).toBe('lfx');
  });
});

describe('RunpodClient.waitForStatus', () => {
  const job = '{"id":"j","status":"IN_PROGRESS"}';
  it('holds a long-poll at most 90 s, the most the official client asks for (a held poll counts against the 400 concurrent)', async () => {
    const sent: string[] = [];
    const client = new RunpodClient({ baseUrl: 'http://runpod.invalid/v2', apiKey: 'k', endpointId: 'e', fetch: (async (url: string) => (sent.push(url), new Response(job))) as typeof fetch });
    await client.waitForStatus('j', 300_000);
    await client.waitForStatus('j', 10);
    expect(sent).toEqual(['http://runpod.invalid/v2/e/status-sync/j?wait=90000', 'http://runpod.invalid/v2/e/status-sync/j?wait=1000']);
  });
  it('falls back to /status for good on an endpoint without /status-sync', async () => {
    const sent: string[] = [];
    const client = new RunpodClient({ baseUrl: 'http://runpod.invalid/v2', apiKey: 'k', endpointId: 'e', fetch: (async (url: string) => (sent.push(url), url.includes('status-sync') ? new Response('', { status: 404 }) : new Response(job))) as typeof fetch });
    expect((await client.waitForStatus('j', 5_000)).status).toBe('IN_PROGRESS');
    await client.waitForStatus('j', 5_000);
    expect(sent).toEqual(['http://runpod.invalid/v2/e/status-sync/j?wait=5000', 'http://runpod.invalid/v2/e/status/j', 'http://runpod.invalid/v2/e/status/j']);
  });
});

describe('RunpodClient.submit', () => {
  it('refuses a job input over the RunPod 10 MB /run limit before sending anything', async () => {
    const sent: string[] = [];
    const client = new RunpodClient({ baseUrl: 'http://runpod.invalid/v2', apiKey: 'k', endpointId: 'e', fetch: (async (url: string) => (sent.push(url), new Response('{"id":"j","status":"IN_QUEUE"}'))) as typeof fetch });
    const image = (i: number) => ({ id: sha256(String(i)), url: `https://s3.example/b/${i}.png?X-Amz-Signature=${'a'.repeat(2000)}` });
    const input = { task: 'caption', triggerWord: 'lfx', images: Array.from({ length: 5000 }, (_, i) => image(i)) };
    await expect(client.submit(input)).rejects.toBeInstanceOf(RunpodPayloadTooLarge);
    expect(sent).toEqual([]);
    expect(await client.submit({ ...input, images: input.images.slice(0, 100) })).toBe('j');
    expect(sent).toEqual(['http://runpod.invalid/v2/e/run']);
  });
  it('retries 429, 5xx and the network; a 4xx fails at once', async () => {
    const answers = [new Response('', { status: 429 }), new Response('', { status: 503 }), new Response('{"id":"j","status":"IN_QUEUE"}')];
    const client = new RunpodClient({ baseUrl: 'http://runpod.invalid/v2', apiKey: 'k', endpointId: 'e', fetch: (async () => answers.shift()!) as typeof fetch });
    const retried: number[] = [];
    expect(await client.submit({}, {}, { sleep: async () => undefined, onRetry: (_w, attempt) => retried.push(attempt) })).toBe('j');
    expect(retried).toEqual([1, 2]);
    const refusing = new RunpodClient({ baseUrl: 'http://runpod.invalid/v2', apiKey: 'k', endpointId: 'e', fetch: (async () => new Response('{"error":"bad"}', { status: 400 })) as typeof fetch });
    await expect(refusing.submit({}, {}, { sleep: async () => undefined })).rejects.toThrow(/HTTP 400: bad/);
  });
});
