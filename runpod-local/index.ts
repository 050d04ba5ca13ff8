// runpod-local: a local endpoint that speaks RunPod serverless's client API and the worker
// protocol of the runpod Python SDK, so an unmodified `runpod.serverless.start` worker runs
// against it. One server can host several endpoints. See runpod-local/README.md.
import { createAdaptorServer } from '@hono/node-server';
import type { Server } from 'node:http';
import { pino, type Logger } from 'pino';
import { createApp } from './app.js';
import { LocalEndpoint, type EndpointHealth, type EndpointOptions } from './endpoint.js';
import type { FaultConfig, Faults, LimitStats, Operation } from './faults.js';
import type { DoneBody, LedgerEntry } from './jobs.js';
import type { WorkerInfo } from './supervisor.js';

export type { LedgerEntry, LedgerAttempt, JobState } from './jobs.js';
export type { WorkerInfo, WorkerState } from './supervisor.js';
export type { EndpointOptions, EndpointHealth } from './endpoint.js';
export type { FaultConfig, LimitStats } from './faults.js';

export interface RunpodLocalOptions extends EndpointOptions {
  /** 0 picks a free port. */
  port: number;
  host?: string;
  apiKey: string;
  logger?: Logger;
  /** More endpoints on the same server, each with its own id, workers and settings. */
  endpoints?: Array<EndpointOptions & { endpointId: string }>;
}

/** One endpoint of a running runpod-local. */
export interface RunpodLocalEndpoint {
  endpointId: string;
  ledger(): LedgerEntry[];
  workers(): WorkerInfo[];
  health(): EndpointHealth;
  /** Replaces the endpoint's fault injection ({} turns it off). */
  setFaults(faults: FaultConfig): void;
  /** Changes some faults, keeping the others and their counts (see Faults.patch). */
  patchFaults(change: Parameters<Faults['patch']>[0]): void;
  /** The faults now, with what is left of their counts and how many were injected. */
  faults(): ReturnType<Faults['get']>;
  /** /status and /status-sync requests being answered now (the service allows 400 at once). */
  openStatusRequests(): number;
  /** What an operation's limits saw since the last reset (status covers status-sync); undefined without limits. */
  limitStats(op?: Operation): LimitStats | undefined;
  /** Starts those counts again. */
  resetLimitStats(): void;
  /** Benchmarks and tests: a worker with no process, driven from this one (see InProcessWorker). */
  inProcessWorker(workerId: string): InProcessWorker;
}

/**
 * A worker with no process, for benchmarks and tests that need many running jobs at once without
 * starting workers: what job-take and job-done do, called in-process. Its jobs are held by no
 * supervised worker, so no heartbeat or restart touches them; cancel and timeouts still apply.
 */
export interface InProcessWorker {
  /** Up to `max` queued jobs, now IN_PROGRESS on this worker (none when the queue is empty). */
  take(max: number): Promise<string[]>;
  /** As job-done: `{status: 'IN_PROGRESS', output}` is a progress update (the /status output), `{output}` the result, `{error}` a failure. */
  report(id: string, body: DoneBody): 'progress' | 'finished' | 'ignored';
}

export interface RunpodLocal {
  /** Base URL of the client API, e.g. http://127.0.0.1:8300/v2 */
  url: string;
  port: number;
  /** The main endpoint's id. */
  endpointId: string;
  /** Every endpoint's jobs (each entry names its endpoint). */
  ledger(): LedgerEntry[];
  /** Every endpoint's workers. */
  workers(): WorkerInfo[];
  /** One endpoint by id (default: the main one). */
  endpoint(id?: string): RunpodLocalEndpoint;
  /** Every endpoint, the main one first. */
  endpoints(): RunpodLocalEndpoint[];
  stop(): Promise<void>;
}

export async function startRunpodLocal(options: RunpodLocalOptions): Promise<RunpodLocal> {
  const host = options.host ?? '127.0.0.1';
  const logger = options.logger ?? pino({ name: 'runpod-local' });
  if (!options.apiKey) throw new Error('runpod-local: apiKey is required');
  const { port: _port, host: _host, apiKey, logger: _logger, endpoints: more = [], ...main } = options;
  const mainId = main.endpointId ?? 'local';

  const endpoints = new Map<string, LocalEndpoint>();
  for (const e of [{ ...main, endpointId: mainId }, ...more]) {
    if (!/^[A-Za-z0-9_-]+$/.test(e.endpointId)) throw new Error(`runpod-local: invalid endpoint id ${JSON.stringify(e.endpointId)}`);
    if (endpoints.has(e.endpointId)) throw new Error(`runpod-local: endpoint ${e.endpointId} is defined twice`);
    endpoints.set(e.endpointId, new LocalEndpoint(e, apiKey, logger));
  }

  const app = createApp({ apiKey, endpoints, logger });
  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  // The SDK's aiohttp session reuses connections after a handler has blocked its event loop for
  // minutes (training); Node's 5 s keep-alive would close them and the result POST would fail
  // with "Server disconnected". Keep idle connections open like a long-lived service does.
  server.keepAliveTimeout = 3_600_000;
  server.headersTimeout = 3_600_000 + 1_000;
  // /runsync and /status-sync hold requests open for up to 5 minutes.
  server.requestTimeout = 0;
  await listen(server, host, options.port);
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  const workerHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  const origin = `http://${workerHost.includes(':') ? `[${workerHost}]` : workerHost}:${port}`;
  // Workers are spawned only after the server listens.
  for (const e of endpoints.values()) e.start(origin);
  logger.info(
    { url: `${origin}/v2`, endpoints: [...endpoints.keys()] },
    'runpod-local listening',
  );

  const handle = (e: LocalEndpoint): RunpodLocalEndpoint => ({
    endpointId: e.id,
    ledger: () => e.ledger(),
    workers: () => e.workers(),
    health: () => e.health(),
    setFaults: (f) => e.setFaults(f),
    patchFaults: (change) => e.faults.patch(change),
    faults: () => e.faults.get(),
    openStatusRequests: () => e.limiter?.open('status') ?? 0,
    limitStats: (op = 'status') => e.limiter?.stats(op),
    resetLimitStats: () => e.limiter?.resetStats(),
    inProcessWorker: (workerId) => {
      const holder = `in-process:${workerId}`;
      return {
        take: async (max) => (await e.store.take(holder, workerId, () => max, 0)).map((j) => j.id),
        report: (id, body) => e.store.report(id, holder, body, false),
      };
    },
  });
  let stopped: Promise<void> | undefined;
  return {
    url: `${origin}/v2`,
    port,
    endpointId: mainId,
    ledger: () => [...endpoints.values()].flatMap((e) => e.ledger()),
    workers: () => [...endpoints.values()].flatMap((e) => e.workers()),
    endpoint: (id = mainId) => {
      const e = endpoints.get(id);
      if (!e) throw new Error(`runpod-local: no endpoint ${id}`);
      return handle(e);
    },
    endpoints: () => [...endpoints.values()].map(handle),
    stop: () =>
      (stopped ??= (async () => {
        await Promise.all([...endpoints.values()].map((e) => e.stop(e.options.stopGraceMs ?? 5_000)));
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
