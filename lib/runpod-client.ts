// A small typed client for a RunPod serverless endpoint, with the service's transport rules: which
// failures of /run are retried, the 10 MB /run limit, /status-sync long-polls with a /status
// fallback, cancels that ride out API errors. The same code talks to the real service (base URL
// https://api.runpod.ai/v2) and to runpod-local. Errors never carry the API key or the request
// body: job inputs hold presigned URLs.
import { z } from 'zod';
import type { Config } from './config.js';

/** The documented job states (RUNNING is listed beside IN_PROGRESS); a state the client does not
 * know is kept as it came (and treated as not finished), never a parse error. */
export const KNOWN_JOB_STATES = ['IN_QUEUE', 'RUNNING', 'IN_PROGRESS', 'COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT'] as const;
export type RunpodJobState = (typeof KNOWN_JOB_STATES)[number] | (string & {});
export const RunpodJobState = z.string().min(1) as z.ZodType<RunpodJobState>;
/** States after which a job does nothing more (and bills nothing more). */
export const FINAL_JOB_STATES: ReadonlySet<string> = new Set(['COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT']);
export const isFinalState = (state: string) => FINAL_JOB_STATES.has(state);
/** A worker holds the job (the service says IN_PROGRESS or RUNNING). */
export const isRunningState = (state: string) => state === 'IN_PROGRESS' || state === 'RUNNING';

/** GET /status/{id}. Unknown extra fields are kept; nulls are read as absent. */
export const RunpodJobStatus = z.looseObject({
  id: z.string(),
  status: RunpodJobState,
  delayTime: z.number().nullish().transform((v) => v ?? undefined),
  executionTime: z.number().nullish().transform((v) => v ?? undefined),
  /** The result once COMPLETED; while IN_PROGRESS, the latest progress update. */
  output: z.unknown().optional(),
  /** FAILED/TIMED_OUT reason; the service sends a string, anything else is JSON-encoded. */
  error: z
    .unknown()
    .optional()
    .transform((v) => (v === undefined || v === null ? undefined : typeof v === 'string' ? v : JSON.stringify(v))),
  workerId: z.string().nullish().transform((v) => v ?? undefined),
});
export type RunpodJobStatus = z.infer<typeof RunpodJobStatus>;

export const RunpodRunResponse = z.looseObject({ id: z.string(), status: RunpodJobState });
export type RunpodRunResponse = z.infer<typeof RunpodRunResponse>;

export const RunpodCancelResponse = z.looseObject({ id: z.string(), status: RunpodJobState });
export type RunpodCancelResponse = z.infer<typeof RunpodCancelResponse>;

const count = z.number().int().nonnegative().default(0);
/** GET /health: `jobs` and `workers {idle, running}` are the documented fields; others are kept if sent. */
export const RunpodHealth = z.looseObject({
  jobs: z.looseObject({ completed: count, failed: count, inProgress: count, inQueue: count, retried: count }),
  workers: z.looseObject({ idle: count, running: count }),
  /** runpod-local only, when asked for (healthDiagnosis): why jobs wait, and the last worker failure. */
  diagnosis: z.looseObject({ queue: z.string(), lastWorkerFailure: z.string().optional() }).optional(),
});
export type RunpodHealth = z.infer<typeof RunpodHealth>;

/** The REST API's GET /v2/serverless/{id}: the endpoint's settings (the fields loraflow reads). */
export const RunpodEndpointConfig = z.looseObject({
  workers: z.looseObject({ min: z.number().int().nonnegative().optional(), max: z.number().int().nonnegative().optional() }).optional(),
});
export type RunpodEndpointConfig = z.infer<typeof RunpodEndpointConfig>;

/** The REST API's GET /v2/serverless/{id}/workers: how many workers are in each state. */
export const RunpodWorkers = z.looseObject({
  summary: z.looseObject({ running: count, idle: count, initializing: count, throttled: count, unhealthy: count, total: count }),
});
export type RunpodWorkers = z.infer<typeof RunpodWorkers>;

/** A cancelled job was still queued or running when cancelJob gave up checking. */
export class RunpodCancelUnconfirmed extends Error {
  override name = 'RunpodCancelUnconfirmed';
}

/** A non-2xx answer (or an unreadable one). The message names the operation, never the key or body. */
export class RunpodHttpError extends Error {
  override name = 'RunpodHttpError';
  constructor(
    message: string,
    readonly status: number,
    readonly operation: string,
  ) {
    super(message);
  }
}

/** /status answered 404: the id is unknown, or its result was purged after completion. */
export class RunpodJobNotFound extends RunpodHttpError {
  override name = 'RunpodJobNotFound';
  constructor(
    readonly jobId: string,
    message: string,
  ) {
    super(message, 404, 'status');
  }
}

/** GET /stream/{id}: chunks a generator handler produced since the last call. */
export const RunpodStreamResponse = z.looseObject({
  status: RunpodJobState,
  stream: z.array(z.looseObject({ output: z.unknown() })).default([]),
  error: z.unknown().optional(),
});
export type RunpodStreamResponse = z.infer<typeof RunpodStreamResponse>;

export const RunpodPurgeResponse = z.looseObject({ removed: z.number().int().nonnegative(), status: z.string() });
export type RunpodPurgeResponse = z.infer<typeof RunpodPurgeResponse>;

export interface RunpodClientOptions {
  /** e.g. https://api.runpod.ai/v2 or http://127.0.0.1:8300/v2 */
  baseUrl: string;
  apiKey: string;
  endpointId: string;
  /** The REST API, e.g. https://api.runpod.io; absent: endpointConfig() and workers() answer undefined. */
  restBase?: string;
  fetch?: typeof fetch;
  /** Per-request timeout; default 30 s. */
  timeoutMs?: number;
}

export interface RunOptions {
  webhook?: string;
  /** RunPod's per-request policy, e.g. { executionTimeout: ms }. */
  policy?: Record<string, unknown>;
}

/** RunPod refuses /run bodies over 10 MB. */
export const RUNPOD_RUN_LIMIT_BYTES = 10 * 1000 * 1000;

/** A /run body over RUNPOD_RUN_LIMIT_BYTES: refused here, before a request the service would refuse. */
export class RunpodPayloadTooLarge extends Error {
  override name = 'RunpodPayloadTooLarge';
  constructor(readonly bytes: number) {
    super(`the job input is ${(bytes / 1e6).toFixed(1)} MB, over RunPod's 10 MB limit for /run`);
  }
}

/** How the retrying calls wait and tell: an activity passes its cancellable sleep and its logger. */
export interface RetryHooks {
  sleep?: (ms: number) => Promise<void>;
  onRetry?: (what: string, attempt: number, error: unknown) => void;
}

const SUBMIT_ATTEMPTS = 5;
/** The official JS SDK clamps /status-sync's wait to 1–90 s; the service documents no more. */
const MAX_LONG_POLL_MS = 90_000;
const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class RunpodClient {
  private readonly base: string;
  private readonly fetchImpl: typeof fetch;
  private readonly timeoutMs: number;
  /** False once the endpoint has shown it has no /status-sync: waitForStatus then polls /status. */
  private longPollSupported = true;

  constructor(private readonly opts: RunpodClientOptions) {
    this.base = `${opts.baseUrl.replace(/\/+$/, '')}/${encodeURIComponent(opts.endpointId)}`;
    this.fetchImpl = opts.fetch ?? fetch;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  static fromConfig(config: Pick<Config, 'RUNPOD_API_BASE' | 'RUNPOD_API_KEY' | 'RUNPOD_ENDPOINT_ID' | 'RUNPOD_REST_BASE'>, fetchImpl?: typeof fetch): RunpodClient {
    return new RunpodClient({
      baseUrl: config.RUNPOD_API_BASE,
      apiKey: config.RUNPOD_API_KEY,
      endpointId: config.RUNPOD_ENDPOINT_ID,
      restBase: config.RUNPOD_REST_BASE,
      ...(fetchImpl ? { fetch: fetchImpl } : {}),
    });
  }

  /**
   * POST /run within the payload limit, riding out throttling, server errors and the network. A
   * 5xx could come after the job was created: callers make duplicates harmless (a claimed training
   * stops its duplicate before any work), so retrying is safe. Returns the job id.
   */
  async submit(input: unknown, options: RunOptions = {}, hooks: RetryHooks = {}): Promise<string> {
    const bytes = Buffer.byteLength(JSON.stringify({ input, ...options }));
    if (bytes > RUNPOD_RUN_LIMIT_BYTES) throw new RunpodPayloadTooLarge(bytes);
    for (let attempt = 1; ; attempt++) {
      try {
        return (await this.run(input, options)).id;
      } catch (err) {
        const retryable = !(err instanceof RunpodHttpError) || err.status === 0 || err.status === 429 || err.status >= 500;
        if (!retryable || attempt === SUBMIT_ATTEMPTS) throw err;
        hooks.onRetry?.('run', attempt, err);
        // Jittered: a burst of stages refused together (429) must not all come back in the same instant.
        const backoff = Math.min(10_000, 500 * 2 ** attempt);
        await (hooks.sleep ?? defaultSleep)(backoff / 2 + Math.random() * (backoff / 2));
      }
    }
  }

  /**
   * The job's status, waiting up to `waitMs` (at most 90 s, like the official SDK) for it to finish
   * with a /status-sync long-poll where the endpoint has one (`waitMs` 0, or an endpoint that
   * refused it once: plain /status).
   */
  async waitForStatus(id: string, waitMs: number): Promise<RunpodJobStatus> {
    if (!waitMs || !this.longPollSupported) return this.status(id);
    waitMs = Math.min(MAX_LONG_POLL_MS, Math.max(1000, waitMs));
    try {
      return await this.statusSync(id, waitMs);
    } catch (err) {
      if (!(err instanceof RunpodHttpError && [400, 404, 405].includes(err.status))) throw err;
      // An endpoint without /status-sync refuses it: if /status knows the job, poll that for good.
      const status = await this.status(id);
      this.longPollSupported = false;
      return status;
    }
  }

  /**
   * Cancels the job and checks that it stopped: POST /cancel and GET /status are retried through
   * throttling and API errors until the job is in a final state (it may have finished on its own)
   * or gone, for up to `withinMs`; past that, RunpodCancelUnconfirmed (the caller keeps trying
   * durably: the run's cleanup, then the janitor).
   */
  async cancelJob(id: string, hooks: RetryHooks & { withinMs?: number } = {}): Promise<'cancelled' | 'finished' | 'not-found'> {
    const deadline = Date.now() + (hooks.withinMs ?? 60_000);
    const sleep = hooks.sleep ?? defaultSleep;
    let asked = false;
    let last: unknown;
    for (let attempt = 1; Date.now() < deadline; attempt++) {
      try {
        if (!asked) {
          const answer = await this.cancel(id);
          asked = true;
          if (isFinalState(answer.status)) return answer.status === 'CANCELLED' ? 'cancelled' : 'finished';
        }
        const status = await this.status(id);
        if (isFinalState(status.status)) return status.status === 'CANCELLED' ? 'cancelled' : 'finished';
        asked = false; // still queued or running: ask again
      } catch (err) {
        if (err instanceof RunpodJobNotFound) return 'not-found';
        last = err;
        hooks.onRetry?.('cancel', attempt, err);
      }
      await sleep(Math.min(2_000, 200 * 2 ** Math.min(attempt, 4)));
    }
    throw new RunpodCancelUnconfirmed(`GPU job ${id} could not be confirmed cancelled${last instanceof Error ? `: ${last.message}` : ''}`);
  }

  /** The endpoint's settings from the REST API (its max workers), or undefined without a REST base. */
  async endpointConfig(): Promise<RunpodEndpointConfig | undefined> {
    if (!this.opts.restBase) return undefined;
    return parseOrThrow('endpoint', RunpodEndpointConfig, await this.request('endpoint', 'GET', `/v2/serverless/${encodeURIComponent(this.opts.endpointId)}`, undefined, undefined, this.timeoutMs, this.opts.restBase));
  }

  /** The endpoint's workers by state from the REST API, or undefined without a REST base. */
  async workers(): Promise<RunpodWorkers | undefined> {
    if (!this.opts.restBase) return undefined;
    return parseOrThrow('workers', RunpodWorkers, await this.request('workers', 'GET', `/v2/serverless/${encodeURIComponent(this.opts.endpointId)}/workers`, undefined, undefined, this.timeoutMs, this.opts.restBase));
  }

  /** POST /run: queues a job. */
  async run(input: unknown, options: RunOptions = {}): Promise<RunpodRunResponse> {
    const body = { input, ...options };
    return parseOrThrow('run', RunpodRunResponse, await this.request('run', 'POST', '/run', body));
  }

  /** GET /status/{id}; throws RunpodJobNotFound on 404. */
  async status(id: string): Promise<RunpodJobStatus> {
    return parseOrThrow('status', RunpodJobStatus, await this.request('status', 'GET', `/status/${encodeURIComponent(id)}`, undefined, id));
  }

  /**
   * POST /runsync?wait=: queues a job and waits up to `waitMs` (the service allows 1 s to 5 min,
   * default 90 s) for it to finish; answers its status (IN_QUEUE / IN_PROGRESS when not done).
   */
  async runsync(input: unknown, options: RunOptions & { waitMs?: number } = {}): Promise<RunpodJobStatus> {
    const { waitMs, ...rest } = options;
    const query = waitMs !== undefined ? `?wait=${Math.round(waitMs)}` : '';
    const timeoutMs = Math.max(this.timeoutMs, (waitMs ?? 90_000) + 10_000);
    return parseOrThrow('runsync', RunpodJobStatus, await this.request('runsync', 'POST', `/runsync${query}`, { input, ...rest }, undefined, timeoutMs));
  }

  /** GET /status-sync/{id}?wait=: like status, but waits up to `waitMs` for the job to finish. */
  async statusSync(id: string, waitMs = 90_000): Promise<RunpodJobStatus> {
    const path = `/status-sync/${encodeURIComponent(id)}?wait=${Math.round(waitMs)}`;
    const timeoutMs = Math.max(this.timeoutMs, waitMs + 10_000);
    return parseOrThrow('status-sync', RunpodJobStatus, await this.request('status-sync', 'GET', path, undefined, id, timeoutMs));
  }

  /** GET /stream/{id}: the chunks streamed since the last call, and the job's state. */
  async stream(id: string): Promise<RunpodStreamResponse> {
    return parseOrThrow('stream', RunpodStreamResponse, await this.request('stream', 'GET', `/stream/${encodeURIComponent(id)}`, undefined, id));
  }

  /** POST /retry/{id}: requeues a FAILED or TIMED_OUT job under the same id. */
  async retry(id: string): Promise<RunpodRunResponse> {
    return parseOrThrow('retry', RunpodRunResponse, await this.request('retry', 'POST', `/retry/${encodeURIComponent(id)}`, undefined, id));
  }

  /** POST /purge-queue: removes every queued job (running ones go on). */
  async purgeQueue(): Promise<RunpodPurgeResponse> {
    return parseOrThrow('purge-queue', RunpodPurgeResponse, await this.request('purge-queue', 'POST', '/purge-queue'));
  }

  /** POST /cancel/{id}; throws RunpodJobNotFound on 404. */
  async cancel(id: string): Promise<RunpodCancelResponse> {
    return parseOrThrow('cancel', RunpodCancelResponse, await this.request('cancel', 'POST', `/cancel/${encodeURIComponent(id)}`, undefined, id));
  }

  /** GET /health. */
  async health(): Promise<RunpodHealth> {
    return parseOrThrow('health', RunpodHealth, await this.request('health', 'GET', '/health'));
  }

  private async request(
    operation: string,
    method: string,
    path: string,
    body?: unknown,
    jobId?: string,
    timeoutMs = this.timeoutMs,
    base = this.base,
  ): Promise<unknown> {
    const url = `${base.replace(/\/+$/, '')}${path}`;
    const where = `RunPod ${operation} (${method} ${url.replace(/\?.*$/, '')})`;
    let res: Response;
    try {
      res = await this.fetchImpl(url, {
        method,
        headers: {
          authorization: `Bearer ${this.opts.apiKey}`,
          accept: 'application/json',
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const reason = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      throw new RunpodHttpError(`${where} failed: ${this.scrub(reason)}`, 0, operation);
    }
    const text = await res.text().catch(() => '');
    if (!res.ok) {
      const detail = this.scrub(errorDetail(text));
      const message = `${where} failed: HTTP ${res.status}${detail ? `: ${detail}` : ''}`;
      if (res.status === 404 && jobId !== undefined) {
        const notFound = new RunpodJobNotFound(jobId, message);
        if (operation !== 'status') Object.defineProperty(notFound, 'operation', { value: operation });
        throw notFound;
      }
      throw new RunpodHttpError(message, res.status, operation);
    }
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new RunpodHttpError(`${where}: HTTP ${res.status} with a body that is not JSON`, res.status, operation);
    }
  }

  private scrub(text: string): string {
    let out = text.replace(/(https?:\/\/[^\s?"']+)\?[^\s"']*/g, '$1?<redacted>');
    if (this.opts.apiKey) out = out.split(this.opts.apiKey).join('<redacted>');
    return out.length > 300 ? `${out.slice(0, 300)}…` : out;
  }
}

function errorDetail(text: string): string {
  try {
    const body = JSON.parse(text) as unknown;
    if (body && typeof body === 'object' && 'error' in body) {
      const e = (body as { error: unknown }).error;
      return typeof e === 'string' ? e : JSON.stringify(e);
    }
  } catch {
    // not JSON
  }
  return text.trim();
}

function parseOrThrow<T>(operation: string, schema: z.ZodType<T>, data: unknown): T {
  const parsed = schema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new RunpodHttpError(
      `RunPod ${operation}: unexpected response: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`,
      200,
      operation,
    );
  }
  return parsed.data;
}
