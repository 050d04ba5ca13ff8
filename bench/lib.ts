// Shared pieces of the benchmarks: a stack on free ports in a temp dir (Temporal dev server,
// versitygw, runpod-local with a Python handler, the bench worker in its own process),
// /proc sampling, percentiles, and the result files.
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { pino } from 'pino';
import { loadConfig } from '../lib/config.js';
import { RunpodClient, type RunpodJobStatus } from '../lib/runpod-client.js';
import type { Storage } from '../lib/s3.js';
import { repoRoot, TEMPORAL_DEV_SERVER_FLAGS, toolchain } from '../lib/toolchain.js';
import { startRunpodLocal } from '../runpod-local/index.js';
import { type Service, spawnService, stopService, waitUntilReady } from '../stack/services.js';
import { freePort, startS3, tempDir } from '../testkit/services.js';
import { SEARCH_ATTRIBUTES } from '../workflows/definitions.js';
import type { CallCounts } from './worker.js';
import { eachLimit } from '../lib/pool.js';

export const resultsDir = path.join(repoRoot, 'bench', 'results');
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export const API_KEY = 'bench-key';

// ------------------------------------------------------------------ the real GPU worker

/** runpod-local with one process of the real GPU worker (gpu-worker/handler.py, the tiny models), quiet logs to `logFile`. */
export async function startRealGpuEndpoint(logFile: string, workerEnv: Record<string, string> = {}) {
  const runpod = await startRunpodLocal({
    port: 0,
    apiKey: API_KEY,
    workerCommand: [toolchain.python(), '-u', toolchain.gpuWorker()],
    workerCwd: repoRoot,
    workers: 1,
    workerEnv: { LORAFLOW_MODEL_DIR: toolchain.modelDir(), HF_HUB_OFFLINE: '1', PYTHONUNBUFFERED: '1', RUNPOD_LOG_LEVEL: 'WARN', LORAFLOW_LOG_LEVEL: 'WARNING', ...workerEnv },
    logger: pino({ level: 'warn' }, pino.destination({ dest: logFile, mkdir: true })),
  });
  return { runpod, client: new RunpodClient({ baseUrl: runpod.url, apiKey: API_KEY, endpointId: runpod.endpointId }) };
}

/** Submits `input` and polls every 100 ms until the job ends. */
export async function runToEnd(client: RunpodClient, input: unknown): Promise<RunpodJobStatus> {
  const { id } = await client.run(input as never);
  for (;;) {
    const status = await client.status(id);
    if (['COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT'].includes(status.status)) return status;
    await sleep(100);
  }
}

// ------------------------------------------------------------------ /proc

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

export interface ProcSample {
  at: number;
  /** Resident set, bytes. */
  rss: number;
  /** user + system CPU seconds so far. */
  cpuSeconds: number;
}

export function procSample(pid: number): ProcSample | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
    return { at: Date.now(), rss: rssKb * 1024, cpuSeconds: ticks / CLK_TCK };
  } catch {
    return undefined;
  }
}

/** Samples a process every `everyMs` until stopped: peak and mean RSS, CPU share over the window. */
export function sampler(pid: number, everyMs = 1000) {
  const samples: ProcSample[] = [];
  const take = () => {
    const s = procSample(pid);
    if (s) samples.push(s);
  };
  take();
  const timer = setInterval(take, everyMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      const first = samples[0];
      const last = samples[samples.length - 1];
      if (!first || !last) return undefined;
      const seconds = (last.at - first.at) / 1000;
      return {
        seconds: round(seconds, 1),
        rssPeakMiB: round(Math.max(...samples.map((s) => s.rss)) / 2 ** 20, 1),
        rssMeanMiB: round(samples.reduce((a, s) => a + s.rss, 0) / samples.length / 2 ** 20, 1),
        /** CPU used over the window as a share of one core. */
        cpuCores: seconds > 0 ? round((last.cpuSeconds - first.cpuSeconds) / seconds, 3) : 0,
      };
    },
  };
}

/** All descendants of a pid (for the Python workers under runpod-local's watchdogs). */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of safeReaddir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

// ------------------------------------------------------------------ numbers

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export const mean = (values: number[]) => (values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN);
export const round = (v: number, digits = 3) => (Number.isFinite(v) ? Number(v.toFixed(digits)) : v);

/** Runs `fn` over `items` with at most `limit` in flight (lib/pool.ts), keeping each result. */
export async function pool<T, R>(items: T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  await eachLimit(items, limit, async (item, i) => {
    out[i] = await fn(item, i);
  });
  return out;
}

export function writeResult(name: string, result: unknown): string {
  mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `${name}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}

// ------------------------------------------------------------------ stack

export interface BenchStackOptions {
  /** Handler path under the repo. */
  handler: string;
  /** Python worker processes. */
  gpuWorkers?: number;
  workerEnv?: Record<string, string>;
  /** Passed to runpod-local as is (options only newer versions know are ignored by older ones). */
  runpodExtra?: Record<string, unknown>;
  /** LORAFLOW_POLL_MS for the Temporal worker. */
  pollMs?: number;
  /** maxConcurrentActivityTaskExecutions for the Temporal worker (unset: worker.ts's). */
  maxActivities?: number;
  /** maxCachedWorkflows for the Temporal worker (unset: worker.ts's). */
  maxCachedWorkflows?: number;
  /** Extra environment for the Temporal worker. */
  env?: Record<string, string>;
  /** Start the Temporal worker process (default true). */
  withWorker?: boolean;
  log: (msg: string) => void;
}

export interface BenchStack {
  dir: string;
  storage: Storage;
  s3Endpoint: string;
  runpod: Awaited<ReturnType<typeof startRunpodLocal>>;
  runpodClient: RunpodClient;
  temporal: { service: Service; address: string; pid: number };
  client: Client;
  taskQueue: string;
  worker?: { child: ChildProcess; pid: number; counts(): Promise<CallCounts> };
  stop(): Promise<void>;
}

/** Stacks still running: Ctrl-C or SIGTERM stops them before the benchmark exits. */
const running = new Set<() => Promise<void>>();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`bench: ${signal}, stopping services`);
    void Promise.allSettled([...running].map((stop) => stop())).then(() => process.exit(130));
  });
}

export async function startBenchStack(o: BenchStackOptions): Promise<BenchStack> {
  const tmp = tempDir('bench');
  const logDir = path.join(tmp.dir, 'logs');
  const cleanups: Array<() => Promise<void>> = [];
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      for (const fn of cleanups.reverse()) await fn().catch(() => {});
      tmp.remove();
      running.delete(stop);
    })());
  running.add(stop);
  try {
    const [temporal, s3, runpod] = await Promise.all([
      startTemporalServer(logDir).then((t) => (cleanups.push(() => stopService(t.service)), t)),
      startS3(tmp.dir).then((s) => (cleanups.push(() => s.stop()), s)),
      startRunpodLocal({
        ...(o.runpodExtra ?? {}),
        port: 0,
        apiKey: API_KEY,
        workerCommand: [toolchain.python(), '-u', path.join(repoRoot, o.handler)],
        workerCwd: repoRoot,
        workers: o.gpuWorkers ?? 1,
        workerEnv: { PYTHONUNBUFFERED: '1', HF_HUB_OFFLINE: '1', RUNPOD_LOG_LEVEL: 'WARN', LORAFLOW_MODEL_DIR: toolchain.modelDir(), ...o.workerEnv },
        logger: pino({ level: 'warn' }, pino.destination({ dest: path.join(logDir, 'runpod.log'), mkdir: true })),
      }).then((r) => (cleanups.push(() => r.stop()), r)),
    ]);
    const connection = await Connection.connect({ address: temporal.address });
    cleanups.push(() => connection.close());
    const client = new Client({ connection });
    const taskQueue = 'loraflow-bench';
    const runpodClient = new RunpodClient({ baseUrl: runpod.url, apiKey: API_KEY, endpointId: runpod.endpointId });
    const stack: BenchStack = { dir: tmp.dir, storage: s3.storage, s3Endpoint: s3.endpoint, runpod, runpodClient, temporal, client, taskQueue, stop };
    if (o.withWorker !== false) {
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        TEMPORAL_ADDRESS: temporal.address,
        LORAFLOW_TASK_QUEUE: taskQueue,
        LORAFLOW_S3_ENDPOINT: s3.endpoint,
        RUNPOD_API_BASE: runpod.url,
        RUNPOD_API_KEY: API_KEY,
        RUNPOD_ENDPOINT_ID: runpod.endpointId,
        LORAFLOW_POLL_MS: String(o.pollMs ?? loadConfig({}).LORAFLOW_POLL_MS),
        ...(o.maxActivities ? { BENCH_MAX_ACTIVITIES: String(o.maxActivities) } : {}),
        ...(o.maxCachedWorkflows ? { BENCH_MAX_CACHED_WORKFLOWS: String(o.maxCachedWorkflows) } : {}),
        ...o.env,
      };
      stack.worker = await startWorkerProcess(env, logDir);
      cleanups.push(() => stopWorkerProcess(stack.worker!.child));
    }
    return stack;
  } catch (err) {
    await stop();
    throw err;
  }
}

async function startTemporalServer(logDir: string) {
  const port = await freePort();
  const service = spawnService(
    'temporal',
    toolchain.temporal(),
    [
      'server', 'start-dev', '--headless', '--ip', '127.0.0.1', '--port', String(port), '--log-level', 'error',
      ...TEMPORAL_DEV_SERVER_FLAGS,
      ...SEARCH_ATTRIBUTES.flatMap((key) => ['--search-attribute', `${key.name}=Keyword`]),
    ],
    { logDir },
  );
  const address = `127.0.0.1:${port}`;
  await waitUntilReady(service, async () => {
    const connection = await Connection.connect({ address, connectTimeout: 1000 });
    await connection.workflowService.getSystemInfo({});
    await connection.close();
    return true;
  });
  return { service, address, pid: service.child.pid! };
}

async function startWorkerProcess(env: NodeJS.ProcessEnv, logDir: string) {
  mkdirSync(logDir, { recursive: true });
  const child = fork(path.join(repoRoot, 'bench', 'worker.ts'), [], {
    env,
    cwd: repoRoot,
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const logs: string[] = [];
  const keep = (b: Buffer) => {
    logs.push(b.toString());
    if (logs.length > 200) logs.shift();
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`bench worker exited (${code}): ${logs.join('').slice(-2000)}`)));
    child.on('message', (m: unknown) => {
      if ((m as { ready?: boolean }).ready) resolve();
    });
  });
  child.removeAllListeners('exit');
  const counts = () =>
    new Promise<CallCounts>((resolve) => {
      const on = (m: unknown) => {
        const c = (m as { counts?: CallCounts }).counts;
        if (c) {
          child.off('message', on);
          resolve(c);
        }
      };
      child.on('message', on);
      child.send('counts');
    });
  return { child, pid: child.pid!, counts };
}

async function stopWorkerProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.send('stop');
  const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(killer);
}

/** Sums counts whose key starts with `op ` (e.g. "status"). */
export const callsOf = (c: CallCounts, op: string) =>
  Object.entries(c.byOp)
    .filter(([k]) => k.startsWith(`${op} `))
    .reduce((a, [, n]) => a + n, 0);

export function diffCounts(after: CallCounts, before: CallCounts): CallCounts {
  const byOp: Record<string, number> = {};
  for (const [k, v] of Object.entries(after.byOp)) {
    const d = v - (before.byOp[k] ?? 0);
    if (d) byOp[k] = d;
  }
  return { byOp, total: after.total - before.total };
}
