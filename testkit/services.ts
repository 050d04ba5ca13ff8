// Real services for tests, benchmarks and the chaos suite, on free ports in a temp dir: versitygw
// (S3), the local RunPod endpoint running a Python handler under the unmodified runpod worker
// loop, Temporal via @temporalio/testing pointed at the binary `make setup` built, and loraflow's
// own workers against them.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { WorkflowStartOptions } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkerOptions } from '@temporalio/worker';
import { pino } from 'pino';
import { type ActivityDeps, activityDepsFrom, createActivities } from '../activities/index.js';
import type { RunpodEndpoint } from '../activities/deps.js';
import type { TrainRequest } from '../contract/pipeline.js';
import { loadConfig } from '../lib/config.js';
import { RunpodClient } from '../lib/runpod-client.js';
import { repoRoot, TEMPORAL_DEV_SERVER_FLAGS, toolchain } from '../lib/toolchain.js';
import { createWorkers, type LoraflowWorkerOptions, type LoraflowWorkers } from '../lib/workers.js';
import { type EndpointOptions, type RunpodLocalOptions, startRunpodLocal } from '../runpod-local/index.js';
import { startS3Server } from '../stack/s3.js';
import { freePort, stopService } from '../stack/services.js';
import { serveCompletionWebhook } from '../lib/completion-webhook.js';
import { SEARCH_ATTRIBUTES } from '../workflows/definitions.js';
import type { PublishingTrainLora } from '../workflows/index.js';

export { freePort } from '../stack/services.js';

export function tempDir(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), `loraflow-${prefix}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** What tests change in the defaults: GPU jobs polled every 200 ms (no long-polls), so progress
 * and budget checks keep pace with short scripted jobs. */
export const TEST_ENV = { LORAFLOW_POLL_MS: '200', LORAFLOW_STATUS_WAIT_MS: '0' };
/** The config every test starts from. */
export const testConfig = loadConfig(TEST_ENV);

/** The workflow code for a Worker: the bundle the test run built once (vitest's global setup), else the source. */
export function workflowCode(): Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath'> {
  const codePath = process.env.LORAFLOW_WORKFLOW_BUNDLE;
  return codePath ? { workflowBundle: { codePath } } : { workflowsPath: path.join(repoRoot, 'workflows/index.ts') };
}

/** Environment for a whole embedded stack (stack/index.ts) on free ports, with its data in `dir`. */
export async function stackEnv(dir: string): Promise<Record<string, string>> {
  return {
    LORAFLOW_DATA_DIR: path.join(dir, 'data'),
    TEMPORAL_PORT: String(await freePort()),
    TEMPORAL_UI_PORT: String(await freePort()),
    LORAFLOW_S3_PORT: String(await freePort()),
    RUNPOD_LOCAL_PORT: String(await freePort()),
    LORAFLOW_METRICS_PORT: String(await freePort()),
    LORAFLOW_API_PORT: String(await freePort()),
  };
}

/** LORAFLOW_RUNPOD_WEBHOOK_URL and _LISTEN for a worker's completion webhook on a free loopback port, where runpod-local delivers it. */
export async function loopbackWebhookEnv(): Promise<{ LORAFLOW_RUNPOD_WEBHOOK_URL: string; LORAFLOW_RUNPOD_WEBHOOK_LISTEN: string }> {
  const port = await freePort();
  return { LORAFLOW_RUNPOD_WEBHOOK_URL: `http://127.0.0.1:${port}/runpod-webhook`, LORAFLOW_RUNPOD_WEBHOOK_LISTEN: `127.0.0.1:${port}` };
}

export async function startS3(dir: string) {
  const s3 = await startS3Server({ port: await freePort(), dir: path.join(dir, 's3'), logDir: path.join(dir, 'logs'), config: testConfig });
  return { ...s3, stop: () => stopService(s3.service) };
}

/** The local RunPod endpoint with one Python worker running `handler` (a path under the repo). */
export async function startGpuEndpoint(
  dir: string,
  handler: string,
  workerEnv: Record<string, string> = {},
  options: Partial<Omit<RunpodLocalOptions, 'endpoints'>> & { endpoints?: Array<Partial<EndpointOptions> & { endpointId: string }> } = {},
) {
  const apiKey = 'test-key';
  const worker = {
    workerCommand: [toolchain.python(), '-u', path.join(repoRoot, handler)],
    workerCwd: repoRoot,
    workerEnv: { PYTHONUNBUFFERED: '1', HF_HUB_OFFLINE: '1', RUNPOD_LOG_LEVEL: 'INFO', ...workerEnv },
  };
  const { endpoints: more, ...main } = options;
  const endpoint = await startRunpodLocal({
    port: 0,
    apiKey,
    ...worker,
    logger: pino(pino.destination({ dest: path.join(dir, 'logs', 'runpod.log'), mkdir: true, sync: true })),
    ...main,
    // More endpoints run the same handler unless they say otherwise.
    ...(more ? { endpoints: more.map((e) => ({ ...worker, ...e })) } : {}),
  });
  /** A client of the main endpoint (or `endpointId`); `fetch` lets a test watch or break its requests. */
  const clientWith = (fetchImpl?: typeof fetch, endpointId = endpoint.endpointId) =>
    new RunpodClient({ baseUrl: endpoint.url, restBase: endpoint.url.replace(/\/v2$/, '/rest'), apiKey, endpointId, ...(fetchImpl ? { fetch: fetchImpl } : {}) });
  return { endpoint, client: clientWith(), clientWith };
}

export function startTemporal(): Promise<TestWorkflowEnvironment> {
  return TestWorkflowEnvironment.createLocal({
    server: { executable: { type: 'existing-path', path: toolchain.temporal() }, searchAttributes: SEARCH_ATTRIBUTES, extraArgs: TEMPORAL_DEV_SERVER_FLAGS },
  });
}

export interface FixtureWorkers {
  /** Config variables for the activities' dependencies (over testConfig). */
  config?: Record<string, string>;
  /** Replaces parts of the dependencies built from the config (a RunPod client with a test fetch, a Hub). */
  deps?: Partial<Omit<ActivityDeps, 'runpod'>> & { runpod?: RunpodEndpoint };
  maxGpuJobs?: number;
  worker?: Partial<LoraflowWorkerOptions>;
}

/**
 * The pipeline under test on real services: S3, the local RunPod endpoint running the scripted GPU
 * handler (or `handler`, e.g. the real gpu-worker/handler.py; with `endpoint` options) and the Temporal dev server. `workers()` starts loraflow's
 * workers on a task queue, `start()` a pipeline; `stop()` takes it all down.
 */
export async function startPipelineFixture(name: string, opts: { endpoint?: Parameters<typeof startGpuEndpoint>[3]; handler?: string; workerEnv?: Record<string, string> } = {}) {
  const tmp = tempDir(name);
  const handler = opts.handler ?? 'test/fixtures/scripted_gpu_handler.py';
  const [s3, gpu, env] = await Promise.all([startS3(tmp.dir), startGpuEndpoint(tmp.dir, handler, opts.workerEnv, opts.endpoint), startTemporal()]);
  const created: LoraflowWorkers[] = [];
  const serving: Promise<void>[] = [];
  const webhooks: (() => Promise<void>)[] = [];

  // With LORAFLOW_ENDPOINTS, each listed endpoint of the local RunPod server gets its own client.
  const deps = (config: Record<string, string> = {}, overrides: FixtureWorkers['deps'] = {}): ActivityDeps => {
    const { runpod, ...rest } = overrides;
    const clients = config.LORAFLOW_ENDPOINTS ? { runpodFor: (id: string) => gpu.clientWith(undefined, id) } : { runpod: runpod ?? gpu.client };
    return { ...activityDepsFrom(loadConfig({ ...TEST_ENV, ...config }), { storage: s3.storage, ...clients }), ...rest };
  };
  const workers = async (taskQueue: string, o: FixtureWorkers = {}): Promise<LoraflowWorkers> => {
    const d = deps(o.config, o.deps);
    // As worker.ts: RunPod's completion webhook where LORAFLOW_RUNPOD_WEBHOOK_URL is set.
    const hook = d.gpuJobs.completionWebhook;
    if (hook) webhooks.push((await serveCompletionWebhook(hook, (id) => d.runpod.nudge(id))).close);
    const w = await createWorkers({
      connection: env.nativeConnection,
      taskQueue,
      ...workflowCode(),
      activities: createActivities(d),
      maxHeartbeatThrottleInterval: '1 second',
      maxGpuJobs: o.maxGpuJobs ?? 10,
      ...o.worker,
    });
    created.push(w);
    return w;
  };
  const start = (taskQueue: string, request: TrainRequest, options: Partial<WorkflowStartOptions> = {}) =>
    env.client.workflow.start<PublishingTrainLora>('trainLora', { ...options, taskQueue, workflowId: `${name}-${randomUUID()}`, args: [request] });

  return {
    tmp,
    s3,
    gpu,
    env,
    deps,
    workers,
    start,
    /** Starts loraflow's workers on `taskQueue` until stop(). */
    async serve(taskQueue: string, o: FixtureWorkers = {}): Promise<void> {
      serving.push((await workers(taskQueue, o)).run());
    },
    /** Runs `fn` while loraflow's workers poll a fresh task queue; returns what it returns. */
    async withWorkers<T>(fn: (taskQueue: string) => Promise<T>, o: FixtureWorkers = {}): Promise<T> {
      const taskQueue = `tq-${randomUUID()}`;
      return (await workers(taskQueue, o)).runUntil(fn(taskQueue));
    },
    async stop() {
      for (const w of created) w.shutdown();
      await Promise.allSettled(serving);
      await Promise.allSettled(webhooks.map((close) => close()));
      await env.teardown();
      await gpu.endpoint.stop();
      await s3.stop();
      if (!process.env.KEEP_TMP) tmp.remove();
    },
  };
}
export type PipelineFixture = Awaited<ReturnType<typeof startPipelineFixture>>;
