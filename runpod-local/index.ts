// runpod-local: a local endpoint that speaks RunPod serverless's client API and the worker
// protocol of the runpod Python SDK, so an unmodified `runpod.serverless.start` worker runs
// against it. See runpod-local/README.md.
import { createAdaptorServer } from '@hono/node-server';
import type { Server } from 'node:http';
import { pino, type Logger } from 'pino';
import { createApp } from './app.js';
import { JobStore, type LedgerEntry } from './jobs.js';
import { redact } from './redact.js';
import { Supervisor, type WorkerInfo } from './supervisor.js';

export type { LedgerEntry, JobState } from './jobs.js';
export type { WorkerInfo } from './supervisor.js';

export interface RunpodLocalOptions {
  /** 0 picks a free port. */
  port: number;
  host?: string;
  apiKey: string;
  endpointId?: string;
  /** argv of one GPU worker process, e.g. [python, handler.py]. */
  workerCommand: string[];
  workerEnv?: Record<string, string>;
  workerCwd?: string;
  /** Worker processes to keep running (0 runs none). */
  workers?: number;
  /** How long a finished job's result stays readable (then /status answers 404). */
  resultTtlMs?: number;
  logger?: Logger;
  /** How long a worker may keep running a cancelled job before it is killed. Default 5 s. */
  cancelGraceMs?: number;
  /** Between SIGTERM and SIGKILL on stop(). Default 5 s. */
  stopGraceMs?: number;
  /** Endpoint execution timeout (a request's policy.executionTimeout overrides it). Default: none. */
  executionTimeoutMs?: number;
  /** RUNPOD_PING_INTERVAL for workers, in ms (the SDK uses whole seconds). Default 1000. */
  pingIntervalMs?: number;
  /** How long job-take / job-stop long-polls are held open. Defaults 5 s / 10 s. */
  takePollMs?: number;
  stopPollMs?: number;
}

export interface RunpodLocal {
  /** Base URL of the client API, e.g. http://127.0.0.1:8300/v2 */
  url: string;
  port: number;
  endpointId: string;
  ledger(): LedgerEntry[];
  workers(): WorkerInfo[];
  stop(): Promise<void>;
}

export async function startRunpodLocal(options: RunpodLocalOptions): Promise<RunpodLocal> {
  const host = options.host ?? '127.0.0.1';
  const endpointId = options.endpointId ?? 'local';
  const logger = options.logger ?? pino({ name: 'runpod-local' });
  const secrets = [options.apiKey];
  if (!options.apiKey) throw new Error('runpod-local: apiKey is required');
  if (options.workerCommand.length === 0 && (options.workers ?? 1) > 0) {
    throw new Error('runpod-local: workerCommand is empty');
  }

  // The store and the supervisor refer to each other through these callbacks.
  let requestStop: (holder: string, jobId: string) => void = () => {};
  const store = new JobStore({
    endpointId,
    resultTtlMs: options.resultTtlMs ?? 30 * 60_000,
    ...(options.executionTimeoutMs !== undefined ? { executionTimeoutMs: options.executionTimeoutMs } : {}),
    onStopRunning: (job, holder) => requestStop(holder, job.id),
    onEvent: (event, job) => {
      const fields = { job: job.id, ...(job.ledger.task ? { task: job.ledger.task } : {}), worker: job.workerId };
      if (event === 'finished') {
        const error = job.error ? { error: redact(job.error, secrets).slice(0, 500) } : {};
        logger.info({ ...fields, status: job.status, ...error }, `job ${job.status}`);
      } else {
        logger.info(fields, `job ${event}`);
      }
    },
  });

  // Workers are spawned only after the server listens, so workerBase is set by then.
  let workerBase = '';
  const workerEnv = (workerId: string, token: string): NodeJS.ProcessEnv => {
    const q = `?token=${token}`;
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RUNPOD_')));
    return {
      ...inherited,
      PYTHONUNBUFFERED: '1',
      RUNPOD_SKIP_AUTO_SYSTEM_CHECKS: 'true',
      RUNPOD_SKIP_GPU_CHECK: 'true',
      RUNPOD_PING_INTERVAL: String(options.pingIntervalMs ?? 1000),
      ...options.workerEnv,
      RUNPOD_ENDPOINT_ID: endpointId,
      RUNPOD_POD_ID: workerId,
      RUNPOD_AI_API_KEY: options.apiKey,
      // The SDK replaces $ID with the worker id here and derives job-take-batch / job-stop from it.
      RUNPOD_WEBHOOK_GET_JOB: `${workerBase}/job-take/$ID${q}`,
      // $RUNPOD_POD_ID -> worker id, $ID -> job id; the SDK appends &isStream=...
      RUNPOD_WEBHOOK_POST_OUTPUT: `${workerBase}/job-done/$RUNPOD_POD_ID/$ID${q}`,
      RUNPOD_WEBHOOK_POST_STREAM: `${workerBase}/job-stream/$RUNPOD_POD_ID/$ID${q}`,
      RUNPOD_WEBHOOK_PING: `${workerBase}/ping/$RUNPOD_POD_ID${q}`,
    };
  };

  const supervisor = new Supervisor({
    count: options.workers ?? 1,
    command: options.workerCommand,
    ...(options.workerCwd !== undefined ? { cwd: options.workerCwd } : {}),
    logger,
    secrets,
    cancelGraceMs: options.cancelGraceMs ?? 5_000,
    runningJobs: (token) => store.runningByHolder().get(token) ?? [],
    onExit: (inc, how) => {
      store.releaseWaiters(inc.token);
      store.failHeldBy(inc.token, `worker ${inc.workerId} ${how} while running this job`);
    },
    env: workerEnv,
  });
  requestStop = (holder, jobId) => supervisor.requestStop(holder, jobId);

  const app = createApp({
    endpointId,
    apiKey: options.apiKey,
    store,
    supervisor,
    logger,
    takePollMs: options.takePollMs ?? 5_000,
    stopPollMs: options.stopPollMs ?? 10_000,
  });
  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  // The SDK's aiohttp session reuses connections after a handler has blocked its event loop for
  // minutes (training); Node's 5 s keep-alive would close them and the result POST would fail
  // with "Server disconnected". Keep idle connections open like a long-lived service does.
  server.keepAliveTimeout = 3_600_000;
  server.headersTimeout = 3_600_000 + 1_000;
  await listen(server, host, options.port);
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  const workerHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  const origin = `http://${workerHost.includes(':') ? `[${workerHost}]` : workerHost}:${port}`;
  workerBase = `${origin}/worker/${encodeURIComponent(endpointId)}`;
  supervisor.start();
  logger.info({ url: `${origin}/v2`, endpointId, workers: options.workers ?? 1 }, 'runpod-local listening');

  let stopped: Promise<void> | undefined;
  return {
    url: `${origin}/v2`,
    port,
    endpointId,
    ledger: () => store.ledger(),
    workers: () => supervisor.workers(),
    stop: () =>
      (stopped ??= (async () => {
        // The SDK checks for shutdown between polls: end its job-take long-poll once it has SIGTERM.
        await supervisor.stop(options.stopGraceMs ?? 5_000, () => setTimeout(() => store.close(), 100).unref());
        store.close();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        logger.info('runpod-local stopped');
      })()),
  };
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      if (err.code === 'EADDRINUSE') reject(new Error(`runpod-local: port ${port} is in use`));
      else reject(new Error(`runpod-local: cannot listen on ${host}:${port}: ${err.message}`));
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}
