// Real services for tests, on free ports in a temp dir: versitygw (S3), the local RunPod endpoint
// running a Python handler under the unmodified runpod worker loop, and Temporal via
// @temporalio/testing pointed at the binary `make setup` built.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkerOptions } from '@temporalio/worker';
import { pino } from 'pino';
import { type ActivityDeps, createActivities } from '../activities/index.js';
import { loadConfig } from '../lib/config.js';
import { RunpodClient } from '../lib/runpod-client.js';
import { repoRoot, TEMPORAL_DEV_SERVER_FLAGS, toolchain } from '../lib/toolchain.js';
import { type RunpodLocalOptions, startRunpodLocal } from '../runpod-local/index.js';
import { startS3Server } from '../stack/s3.js';
import { stopService } from '../stack/services.js';
import { createWorkers } from '../lib/workers.js';
import { SEARCH_ATTRIBUTES } from '../workflows/definitions.js';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer().once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export function tempDir(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), `loraflow-${prefix}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export const testConfig = loadConfig({});

/** Environment for a whole embedded stack (stack/index.ts) on free ports, with its data in `dir`. */
export async function stackEnv(dir: string): Promise<Record<string, string>> {
  return {
    LORAFLOW_DATA_DIR: path.join(dir, 'data'),
    TEMPORAL_PORT: String(await freePort()),
    TEMPORAL_UI_PORT: String(await freePort()),
    LORAFLOW_S3_PORT: String(await freePort()),
    RUNPOD_LOCAL_PORT: String(await freePort()),
    LORAFLOW_METRICS_PORT: String(await freePort()),
  };
}

export async function startS3(dir: string) {
  const s3 = await startS3Server({ port: await freePort(), dir: path.join(dir, 's3'), logDir: path.join(dir, 'logs'), config: testConfig });
  return { ...s3, stop: () => stopService(s3.service) };
}

/** The local RunPod endpoint with one Python worker running `handler` (a path under the repo). */
export async function startGpuEndpoint(dir: string, handler: string, workerEnv: Record<string, string> = {}, options: Partial<RunpodLocalOptions> = {}) {
  const apiKey = 'test-key';
  const endpoint = await startRunpodLocal({
    port: 0,
    apiKey,
    workerCommand: [toolchain.python(), '-u', path.join(repoRoot, handler)],
    workerCwd: repoRoot,
    workerEnv: { PYTHONUNBUFFERED: '1', HF_HUB_OFFLINE: '1', RUNPOD_LOG_LEVEL: 'INFO', ...workerEnv },
    logger: pino(pino.destination({ dest: path.join(dir, 'logs', 'runpod.log'), mkdir: true, sync: true })),
    ...options,
  });
  const client = new RunpodClient({ baseUrl: endpoint.url, apiKey, endpointId: endpoint.endpointId });
  return { endpoint, client };
}

export function startTemporal(): Promise<TestWorkflowEnvironment> {
  return TestWorkflowEnvironment.createLocal({
    server: { executable: { type: 'existing-path', path: toolchain.temporal() }, searchAttributes: SEARCH_ATTRIBUTES, extraArgs: TEMPORAL_DEV_SERVER_FLAGS },
  });
}

/**
 * A pipeline under test on real services: S3, the local RunPod endpoint running the scripted GPU
 * handler (with `endpoint` options), the Temporal dev server, and loraflow's workers on `taskQueue`
 * with activities built from `deps`. `stop()` takes it all down.
 */
export async function startPipelineFixture(
  name: string,
  opts: { taskQueue: string; endpoint?: Partial<RunpodLocalOptions>; deps?: Partial<ActivityDeps>; worker?: Partial<WorkerOptions> },
) {
  const tmp = tempDir(name);
  const [s3, gpu, env] = await Promise.all([
    startS3(tmp.dir),
    startGpuEndpoint(tmp.dir, 'test/fixtures/scripted_gpu_handler.py', {}, opts.endpoint),
    startTemporal(),
  ]);
  const workers = await createWorkers({
    connection: env.nativeConnection,
    taskQueue: opts.taskQueue,
    workflowsPath: path.join(repoRoot, 'workflows/index.ts'),
    activities: createActivities({ storage: s3.storage, runpod: gpu.client, pollIntervalMs: 200, ...opts.deps }),
    ...opts.worker,
  });
  const running = workers.run();
  return {
    tmp,
    s3,
    gpu,
    env,
    async stop() {
      workers.shutdown();
      await running.catch(() => undefined);
      await env.teardown();
      await gpu.endpoint.stop();
      await s3.stop();
      tmp.remove();
    },
  };
}
