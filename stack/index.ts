// The embedded local stack behind `make dev`, `make demo` and the end-to-end tests:
// Temporal dev server (SQLite file, Web UI), versitygw (real S3, SigV4 checked), the local
// RunPod endpoint running the Python GPU worker, and the Temporal worker.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { pino } from 'pino';
import { type Config, loadConfig } from '../lib/config.js';
import { repoRoot, TEMPORAL_DEV_SERVER_FLAGS, toolchain } from '../lib/toolchain.js';
import { type RunpodLocalOptions, startRunpodLocal } from '../runpod-local/index.js';
import { SEARCH_ATTRIBUTES } from '../workflows/definitions.js';
import type { Server } from 'node:http';
import { AesGcmCodec } from '../lib/codec.js';
import { startCodecServer } from './codec-server.js';
import { startS3Server } from './s3.js';
import { startStackApi } from './api.js';
import { type S3Proxy, startS3Proxy } from './s3-proxy.js';
import { assertPortFree, freePort, type Service, spawnService, stopService, waitUntilReady } from './services.js';

export interface Stack {
  config: Config;
  /** Environment for processes that talk to this stack (CLI, worker). */
  env: NodeJS.ProcessEnv;
  webUi: string;
  logDir: string;
  runpod: Awaited<ReturnType<typeof startRunpodLocal>>;
  /** With the s3Proxy option: the fault proxy every S3 client goes through. */
  s3Proxy?: S3Proxy;
  /** `loraflow serve` on LORAFLOW_API_PORT (stack/api.ts). */
  api: Awaited<ReturnType<typeof startStackApi>>;
  /** The Temporal worker process; tests kill and restart it. */
  worker?: Service;
  startWorker(): Promise<Service>;
  /** Fault drills (chaos suite): kill -9 the Temporal server, then start it on the same SQLite file. */
  restartTemporal(downMs?: number): Promise<void>;
  stopS3(): Promise<void>;
  startS3(): Promise<void>;
  stop(): Promise<void>;
}

export interface StackOptions {
  env?: NodeJS.ProcessEnv;
  withWorker?: boolean;
  say?: (msg: string) => void;
  /** GPU worker command (default: the real gpu-worker/handler.py) and how many processes. */
  gpuWorkerCommand?: string[];
  gpuWorkers?: number;
  /** The local endpoint's settings beyond the defaults (the chaos suite shortens result retention). */
  endpoint?: Partial<RunpodLocalOptions>;
  /** Put S3 behind a fault proxy (stack.s3Proxy) on LORAFLOW_S3_PORT: the chaos suite's S3 drills. */
  s3Proxy?: boolean;
}

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const env = { ...process.env, ...opts.env };
  const config = loadConfig(env);
  const say = opts.say ?? (() => {});
  const dataDir = path.resolve(config.LORAFLOW_DATA_DIR);
  const logDir = path.join(dataDir, 'logs');
  mkdirSync(dataDir, { recursive: true });

  await assertPortFree(config.TEMPORAL_PORT, 'Temporal', 'TEMPORAL_PORT');
  await assertPortFree(config.TEMPORAL_UI_PORT, 'Temporal Web UI', 'TEMPORAL_UI_PORT');
  await assertPortFree(config.LORAFLOW_S3_PORT, 'S3', 'LORAFLOW_S3_PORT');
  await assertPortFree(config.RUNPOD_LOCAL_PORT, 'RunPod endpoint', 'RUNPOD_LOCAL_PORT');
  await assertPortFree(config.LORAFLOW_API_PORT, 'loraflow API', 'LORAFLOW_API_PORT');
  if (opts.withWorker !== false) await assertPortFree(config.LORAFLOW_METRICS_PORT, 'worker metrics', 'LORAFLOW_METRICS_PORT');

  // Started in this order, stopped in reverse; a restarted service replaces its entry.
  const services = new Map<string, Service>();
  let runpod: Stack['runpod'] | undefined;
  let s3Proxy: S3Proxy | undefined;
  let codecServer: Server | undefined;
  let api: Stack['api'] | undefined;
  const stop = async () => {
    await api?.stop();
    for (const service of [...services.values()].reverse()) await stopService(service);
    await runpod?.stop();
    await s3Proxy?.stop();
    await new Promise((resolve) => (codecServer ? codecServer.close(resolve) : resolve(undefined)));
  };
  try {
    const codec = AesGcmCodec.fromConfig(config);
    if (codec) {
      await assertPortFree(config.LORAFLOW_CODEC_PORT, 'codec endpoint', 'LORAFLOW_CODEC_PORT');
      say(`payloads are encrypted; the Web UI decodes them through http://127.0.0.1:${config.LORAFLOW_CODEC_PORT}`);
      codecServer = await startCodecServer({ codec, port: config.LORAFLOW_CODEC_PORT, allowOrigin: `http://127.0.0.1:${config.TEMPORAL_UI_PORT}`, token: config.LORAFLOW_CODEC_TOKEN });
    }
    const startTemporal = async () => {
      const temporal = spawnService('temporal', toolchain.temporal(), [
        'server', 'start-dev',
        '--db-filename', path.join(dataDir, 'temporal.db'),
        '--ip', '127.0.0.1',
        '--port', String(config.TEMPORAL_PORT),
        '--ui-port', String(config.TEMPORAL_UI_PORT),
        '--namespace', config.TEMPORAL_NAMESPACE,
        '--log-level', 'warn',
        ...TEMPORAL_DEV_SERVER_FLAGS,
        ...SEARCH_ATTRIBUTES.flatMap((key) => ['--search-attribute', `${key.name}=Keyword`]),
        ...(codec ? ['--ui-codec-endpoint', `http://127.0.0.1:${config.LORAFLOW_CODEC_PORT}`] : []),
      ], { logDir, env });
      services.set('temporal', temporal);
      await waitUntilReady(temporal, async () => {
        const connection = await Connection.connect({ address: `127.0.0.1:${config.TEMPORAL_PORT}`, connectTimeout: 1000 });
        await connection.workflowService.getSystemInfo({});
        await connection.close();
        return true;
      });
      await registerSearchAttributes(`127.0.0.1:${config.TEMPORAL_PORT}`, config.TEMPORAL_NAMESPACE);
    };
    say(`starting Temporal on 127.0.0.1:${config.TEMPORAL_PORT} (data: ${path.join(dataDir, 'temporal.db')})`);
    await startTemporal();

    say(`starting S3 (versitygw) on 127.0.0.1:${config.LORAFLOW_S3_PORT}, bucket ${config.LORAFLOW_S3_BUCKET}`);
    const s3Port = opts.s3Proxy ? await freePort() : config.LORAFLOW_S3_PORT;
    const startS3 = async () => {
      services.set('s3', (await startS3Server({ port: s3Port, dir: path.join(dataDir, 's3'), logDir, config, env })).service);
    };
    await startS3();
    if (opts.s3Proxy) {
      s3Proxy = await startS3Proxy({ port: config.LORAFLOW_S3_PORT, upstream: `http://127.0.0.1:${s3Port}` });
    }

    say(`starting the RunPod endpoint on 127.0.0.1:${config.RUNPOD_LOCAL_PORT} (endpoint id ${config.RUNPOD_ENDPOINT_ID})`);
    const worker = {
      workerCommand: opts.gpuWorkerCommand ?? [toolchain.python(), '-u', toolchain.gpuWorker()],
      workerCwd: repoRoot,
      // INFO: the SDK's DEBUG level logs job inputs, which carry presigned URLs.
      workerEnv: { LORAFLOW_MODEL_DIR: toolchain.modelDir(), HF_HUB_OFFLINE: '1', PYTHONUNBUFFERED: '1', RUNPOD_LOG_LEVEL: 'INFO', ...opts.endpoint?.workerEnv },
    };
    // A second endpoint, scaled from zero, so failover between endpoints runs locally too.
    const second = `${config.RUNPOD_ENDPOINT_ID}-b`;
    runpod = await startRunpodLocal({
      ...opts.endpoint,
      port: config.RUNPOD_LOCAL_PORT,
      apiKey: config.RUNPOD_API_KEY,
      endpointId: config.RUNPOD_ENDPOINT_ID,
      workers: opts.gpuWorkers ?? 1,
      ...worker,
      endpoints: [{ ...opts.endpoint, ...worker, endpointId: second, minWorkers: 0, maxWorkers: 1 }],
      logger: pino(pino.destination({ dest: path.join(logDir, 'runpod.log'), mkdir: true })),
    });

    const clientEnv: NodeJS.ProcessEnv = {
      ...env,
      TEMPORAL_ADDRESS: `127.0.0.1:${config.TEMPORAL_PORT}`,
      LORAFLOW_S3_ENDPOINT: `http://127.0.0.1:${config.LORAFLOW_S3_PORT}`,
      RUNPOD_API_BASE: runpod.url,
      RUNPOD_REST_BASE: runpod.url.replace(/\/v2$/, '/rest'),
      // Both local endpoints, the always-on one first; a user's own list wins.
      LORAFLOW_ENDPOINTS: env.LORAFLOW_ENDPOINTS ?? `${config.RUNPOD_ENDPOINT_ID}:local-a:80,${second}:local-b:80`,
      LORAFLOW_METRICS_ADDRESS: `127.0.0.1:${config.LORAFLOW_METRICS_PORT}`,
    };
    api = await startStackApi(loadConfig(clientEnv), say);
    const stack: Stack = {
      api,
      config: loadConfig(clientEnv),
      env: clientEnv,
      webUi: `http://127.0.0.1:${config.TEMPORAL_UI_PORT}`,
      logDir,
      runpod,
      ...(s3Proxy ? { s3Proxy } : {}),
      stop,
      async startWorker() {
        const worker = spawnService('worker', process.execPath, ['--import', 'tsx', path.join(repoRoot, 'worker.ts')], { logDir, env: clientEnv, cwd: repoRoot });
        services.set('worker', worker);
        stack.worker = worker;
        return worker;
      },
      async restartTemporal(downMs = 0) {
        const old = services.get('temporal')!;
        old.child.kill('SIGKILL');
        await new Promise((resolve) => (old.child.exitCode !== null || old.child.signalCode ? resolve(undefined) : old.child.once('exit', resolve)));
        await new Promise((resolve) => setTimeout(resolve, downMs));
        await startTemporal();
      },
      async stopS3() {
        await stopService(services.get('s3')!);
      },
      startS3,
    };
    if (opts.withWorker !== false) {
      say('starting the Temporal worker');
      await stack.startWorker();
    }
    return stack;
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * `start-dev --search-attribute` registers attributes only in a new database: a data dir kept from
 * an older loraflow lacks the ones added since, and every workflow setting them would be stuck on
 * "BadSearchAttributes". Adds the missing ones.
 */
async function registerSearchAttributes(address: string, namespace: string): Promise<void> {
  const connection = await Connection.connect({ address });
  try {
    const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
    const missing = SEARCH_ATTRIBUTES.filter((key) => !(key.name in (customAttributes ?? {})));
    if (missing.length === 0) return;
    await connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(missing.map((key) => [key.name, proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD])),
    });
  } finally {
    await connection.close();
  }
}
