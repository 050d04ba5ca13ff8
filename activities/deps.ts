// What activities need from the world, and the one function that builds it from the config
// (worker.ts and the tests call it; defaults live only in lib/config.ts).
import os from 'node:os';
import path from 'node:path';
import { type CompletionWebhook, completionWebhookFor } from '../lib/completion-webhook.js';
import { type Config, endpointSpecs } from '../lib/config.js';
import type { EndpointSpec } from '../lib/endpoints.js';
import { KeepAlivePacer } from '../lib/keep-alive.js';
import type { GpuPricing } from '../lib/pricing.js';
import { RunpodClient, RunpodJobNotFound, type RunpodJobStatus } from '../lib/runpod-client.js';
import { makeStorage, type Storage } from '../lib/s3.js';
import { StatusPoller, type StatusPollerOptions } from '../lib/status-poller.js';
import type { Resolver } from '../lib/url-guard.js';

/** The RunPod operations GPU stages use (lib/runpod-client.ts implements them). */
export type RunpodEndpoint = Pick<RunpodClient, 'submit' | 'waitForStatus' | 'status' | 'cancelJob' | 'health' | 'endpointConfig' | 'workers'>;

/** A configured endpoint with its client. */
export interface GpuEndpoint extends EndpointSpec {
  client: RunpodEndpoint;
}

export interface ActivityDeps {
  storage: Storage;
  /** Job operations (status, cancel) go to the endpoint that has the job; endpoint-wide ones to the first. */
  runpod: EndpointRouter;
  /** LORAFLOW_ENDPOINTS in order of preference (one: RUNPOD_ENDPOINT_ID). */
  endpoints: GpuEndpoint[];
  gpuJobs: {
    /** How often a GPU job's status is polled when long-polls are off or unavailable. */
    pollIntervalMs: number;
    /** Length of each /status-sync long-poll; 0 polls /status every pollIntervalMs. */
    statusWaitMs: number;
    /** Training steps between checkpoints. */
    checkpointEvery: number;
    /** A training job hands over to the next one after training this long. */
    segmentSeconds: number;
    /** What a job may spend before its first step (download, load, caching). */
    setupSeconds: number;
    /** How often one job may be started (attempt markers in its claim). */
    attempts: number;
    /** Hand train jobs the S3 cache of image encodings (activities/encodings.ts). */
    encodingCache: boolean;
    /** A job queued this long for capacity moves to the next endpoint. */
    queueWaitMs: number;
    /** GPU jobs on one endpoint at once, across every worker (LORAFLOW_MAX_GPU_JOBS). */
    slots: number;
    /** Workers poll as a Worker Deployment version (LORAFLOW_BUILD_ID). */
    versioned?: boolean;
    /** RunPod POSTs each job's end here (LORAFLOW_RUNPOD_WEBHOOK_URL); worker.ts serves it. */
    completionWebhook?: CompletionWebhook;
    /** Paces the keep-alive heartbeats of this process's waiting stages (lib/keep-alive.ts). */
    keepAlive: KeepAlivePacer;
  };
  pricing: GpuPricing;
  /** The captioner the endpoint's GPU worker runs: cached captions of it are reused. */
  captioner: string;
  /** Allow dataset URLs on loopback/private addresses (local development only). */
  allowPrivateUrls: boolean;
  /** Where datasets may come from, and how long and large a download may be. */
  datasets: DatasetDeps;
  /** Pushing published LoRAs to the Hugging Face Hub; absent when HF_TOKEN is unset. */
  hub?: HubDeps;
  /** Training webhooks (activities/webhooks.ts). */
  webhooks: { secret?: string; progressSeconds: number; pollMs: number; timeoutMs: number };
}

export interface DatasetDeps {
  /** LORAFLOW_DATASET_ROOTS, expanded to absolute directories (empty: no local datasets). */
  roots: string[];
  /** LORAFLOW_DATASET_BUCKETS, else the store's own bucket. */
  buckets: string[];
  connectTimeoutMs: number;
  readTimeoutMs: number;
  /** LORAFLOW_DATASET_MAX_BYTES: the most a downloaded dataset may be. */
  maxBytes: number;
  /** Resolves dataset URL hosts; the system resolver unless a test replaces it. */
  resolve?: Resolver;
}

/** `~` and `$TMPDIR` expanded; `none` is no root at all. */
export function datasetRoots(spec: string): string[] {
  if (spec.trim() === 'none') return [];
  return spec
    .split(',')
    .map((r) => r.trim())
    .filter(Boolean)
    .map((r) => path.resolve(r.replace(/^~(?=$|\/)/, os.homedir()).replace(/^\$TMPDIR(?=$|\/)/, os.tmpdir())));
}

export interface HubDeps {
  /** HF_TOKEN: never logged, returned or put in an error message. */
  token: string;
  /** LORAFLOW_HF_ENDPOINT, without a trailing slash. */
  endpoint: string;
  /** LORAFLOW_HF_NAMESPACE; unset: the token's own user. */
  namespace?: string;
  /** LORAFLOW_HF_REPO: `<namespace>/<repo>` containing `{name}`. */
  repoTemplate?: string;
  /** LORAFLOW_HF_PRIVATE: visibility of repos it creates. */
  private: boolean;
  /** LORAFLOW_HF_BASE_MODELS: the worker's base model names → Hub model ids. */
  baseModels: Record<string, string>;
}

/**
 * The RunPod operations on a job, sent to the endpoint that has it: the one it was submitted to
 * (remembered here, or by the heartbeat of a retried attempt), else the first that knows its id
 * (the service answers 404 for another endpoint's job). Endpoint-wide calls go to the first.
 * Waiting GPU stages watch their jobs through one StatusPoller per endpoint (this router is built
 * once per worker process), so together they stay within that endpoint's status limits.
 */
export class EndpointRouter implements RunpodEndpoint {
  private readonly owners = new Map<string, RunpodEndpoint>();
  private readonly pollers = new Map<RunpodEndpoint, StatusPoller>();
  constructor(
    private readonly endpoints: GpuEndpoint[],
    private readonly polling: StatusPollerOptions = { share: 0.75, longPollMs: 10_000, minIntervalMs: 1_000 },
  ) {}

  /** The endpoint's poller (made on first use). */
  pollerOf(client: RunpodEndpoint): StatusPoller {
    let p = this.pollers.get(client);
    if (!p) this.pollers.set(client, (p = new StatusPoller(client, this.polling)));
    return p;
  }
  /** Every endpoint's poller so far, by endpoint id (benchmarks and logs read their counts). */
  pollerStats() {
    return this.endpoints.filter((e) => this.pollers.has(e.client)).map((e) => ({ endpointId: e.id, ...this.pollers.get(e.client)!.budget, ...this.pollers.get(e.client)!.stats() }));
  }
  /** The job's status once it changes from `since`, through its endpoint's shared poller (StatusPoller.watch). */
  watch = async (id: string, since: RunpodJobStatus | undefined, o: { maxWaitMs: number; signal?: AbortSignal }) => this.pollerOf(await this.ownerOf(id)).watch(id, since, o);

  /** A job is said to be final (its completion webhook): its poller asks it next. False when no stage here watches it. */
  nudge(jobId: string): boolean {
    const owner = this.owners.get(jobId);
    const pollers = owner ? [this.pollers.get(owner)] : [...this.pollers.values()];
    return pollers.some((p) => p?.nudge(jobId) ?? false);
  }

  endpoint(id: string): GpuEndpoint {
    const e = this.endpoints.find((x) => x.id === id);
    if (!e) throw new Error(`no GPU endpoint ${id} is configured (LORAFLOW_ENDPOINTS)`);
    return e;
  }
  /** Says that `jobId` lives on endpoint `endpointId`. */
  remember(jobId: string, endpointId: string): void {
    const e = this.endpoints.find((x) => x.id === endpointId);
    if (e) this.owners.set(jobId, e.client);
  }
  private async ownerOf(jobId: string): Promise<RunpodEndpoint> {
    const known = this.owners.get(jobId) ?? (this.endpoints.length === 1 ? this.endpoints[0]!.client : undefined);
    if (known) return known;
    for (const e of this.endpoints) {
      const found = await e.client.status(jobId).then(() => true, (err: unknown) => (err instanceof RunpodJobNotFound ? false : Promise.reject(err)));
      if (found) {
        this.owners.set(jobId, e.client);
        return e.client;
      }
    }
    return this.endpoints[0]!.client; // unknown everywhere: the first endpoint answers the 404
  }
  submit: RunpodEndpoint['submit'] = (...args) => this.endpoints[0]!.client.submit(...args);
  waitForStatus: RunpodEndpoint['waitForStatus'] = async (id, ms) => (await this.ownerOf(id)).waitForStatus(id, ms);
  status: RunpodEndpoint['status'] = async (id) => (await this.ownerOf(id)).status(id);
  cancelJob: RunpodEndpoint['cancelJob'] = async (id, hooks) => (await this.ownerOf(id)).cancelJob(id, hooks);
  health: RunpodEndpoint['health'] = () => this.endpoints[0]!.client.health();
  endpointConfig: RunpodEndpoint['endpointConfig'] = () => this.endpoints[0]!.client.endpointConfig();
  workers: RunpodEndpoint['workers'] = () => this.endpoints[0]!.client.workers();
}

/** LORAFLOW_ENDPOINTS, else the one endpoint RUNPOD_ENDPOINT_ID (GPU type LORAFLOW_GPU_TYPE). */
export function endpointsFrom(config: Config, clientFor: (id: string) => RunpodEndpoint = (id) => RunpodClient.fromConfig({ ...config, RUNPOD_ENDPOINT_ID: id })): GpuEndpoint[] {
  return endpointSpecs(config).map((s) => ({ ...s, client: clientFor(s.id) }));
}

/** The activities' dependencies from the config; `clients` replaces the S3 or RunPod client (tests):
 * `runpod` is the client of the one endpoint, `runpodFor` builds each of LORAFLOW_ENDPOINTS'. */
export function activityDepsFrom(config: Config, clients: { storage?: Storage; runpod?: RunpodEndpoint; runpodFor?: (endpointId: string) => RunpodEndpoint } = {}): ActivityDeps {
  const single = clients.runpod;
  const endpoints = endpointsFrom(config, clients.runpodFor ?? (single && !config.LORAFLOW_ENDPOINTS ? () => single : undefined));
  return {
    storage: clients.storage ?? makeStorage(config),
    runpod: new EndpointRouter(endpoints, { share: config.LORAFLOW_STATUS_SHARE, longPollMs: config.LORAFLOW_STATUS_WAIT_MS, minIntervalMs: config.LORAFLOW_POLL_MS }),
    endpoints,
    gpuJobs: {
      pollIntervalMs: config.LORAFLOW_POLL_MS,
      statusWaitMs: config.LORAFLOW_STATUS_WAIT_MS,
      checkpointEvery: config.LORAFLOW_CHECKPOINT_EVERY,
      segmentSeconds: config.LORAFLOW_SEGMENT_SECONDS,
      setupSeconds: config.LORAFLOW_JOB_SETUP_SECONDS,
      attempts: config.LORAFLOW_GPU_JOB_ATTEMPTS,
      encodingCache: config.LORAFLOW_ENCODING_CACHE,
      queueWaitMs: config.LORAFLOW_ENDPOINT_QUEUE_WAIT_SECONDS * 1000,
      slots: config.LORAFLOW_MAX_GPU_JOBS,
      versioned: config.LORAFLOW_BUILD_ID !== undefined,
      keepAlive: new KeepAlivePacer(),
      ...(config.LORAFLOW_RUNPOD_WEBHOOK_URL ? { completionWebhook: completionWebhookFor(config.LORAFLOW_RUNPOD_WEBHOOK_URL, config.LORAFLOW_RUNPOD_WEBHOOK_LISTEN) } : {}),
    },
    pricing: {
      defaultPerHour: config.LORAFLOW_GPU_PRICE_PER_HOUR,
      byType: config.LORAFLOW_GPU_PRICES,
      ...(config.LORAFLOW_GPU_TYPE ? { endpointGpu: config.LORAFLOW_GPU_TYPE } : {}),
    },
    captioner: config.LORAFLOW_CAPTIONER,
    allowPrivateUrls: config.LORAFLOW_ALLOW_PRIVATE_URLS,
    datasets: {
      roots: datasetRoots(config.LORAFLOW_DATASET_ROOTS),
      buckets: config.LORAFLOW_DATASET_BUCKETS ? config.LORAFLOW_DATASET_BUCKETS.split(',').map((b) => b.trim()).filter(Boolean) : [config.LORAFLOW_S3_BUCKET],
      connectTimeoutMs: config.LORAFLOW_DATASET_CONNECT_TIMEOUT_MS,
      readTimeoutMs: config.LORAFLOW_DATASET_READ_TIMEOUT_MS,
      maxBytes: config.LORAFLOW_DATASET_MAX_BYTES,
    },
    webhooks: {
      ...(config.LORAFLOW_WEBHOOK_SECRET ? { secret: config.LORAFLOW_WEBHOOK_SECRET } : {}),
      progressSeconds: config.LORAFLOW_WEBHOOK_PROGRESS_SECONDS,
      pollMs: 1000,
      timeoutMs: 10_000,
    },
    ...(config.HF_TOKEN
      ? {
          hub: {
            token: config.HF_TOKEN,
            endpoint: config.LORAFLOW_HF_ENDPOINT,
            ...(config.LORAFLOW_HF_NAMESPACE ? { namespace: config.LORAFLOW_HF_NAMESPACE } : {}),
            ...(config.LORAFLOW_HF_REPO ? { repoTemplate: config.LORAFLOW_HF_REPO } : {}),
            private: config.LORAFLOW_HF_PRIVATE,
            baseModels: config.LORAFLOW_HF_BASE_MODELS,
          },
        }
      : {}),
  };
}
