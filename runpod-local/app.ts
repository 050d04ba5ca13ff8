// HTTP routes: RunPod's client API under /v2/{endpointId}, the worker API the runpod Python SDK
// calls under /worker/{endpointId}, and the admin routes (ledger, workers, faults) under /admin.
// Inputs and results are never logged.
import { createHash, timingSafeEqual } from 'node:crypto';
import { Hono, type Context, type MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Logger } from 'pino';
import type { LocalEndpoint } from './endpoint.js';
import { FaultConfig, type Operation } from './faults.js';
import { isRecord, isTerminal, type DoneBody, type Job } from './jobs.js';
import type { Incarnation } from './supervisor.js';

/** RunPod's limits for a /run and a /runsync request body. */
export const RUN_BODY_LIMIT = 10 * 1024 * 1024;
export const RUNSYNC_BODY_LIMIT = 20 * 1024 * 1024;
const WORKER_BODY_LIMIT = 64 * 1024 * 1024;
/** /runsync and /status-sync: ?wait= in ms, 1000..300000, default 90000. */
const SYNC_WAIT = { min: 1_000, max: 300_000, default: 90_000 };

export interface AppOptions {
  apiKey: string;
  endpoints: Map<string, LocalEndpoint>;
  logger: Logger;
}

type Env = { Variables: { endpoint: LocalEndpoint } };

export function createApp(o: AppOptions): Hono<Env> {
  const app = new Hono<Env>();
  const keyDigest = digest(o.apiKey);
  const authorized = (c: Context): boolean => {
    const header = c.req.header('authorization') ?? '';
    const key = header.replace(/^Bearer\s+/i, '');
    return key.length > 0 && timingSafeEqual(digest(key), keyDigest);
  };
  const unauthorized = (c: Context) => c.json({ error: 'Unauthorized: a valid API key is required' }, 401);
  const notFound = (c: Context, what = 'request does not exist') => c.json({ error: what }, 404);

  app.onError((err, c) => {
    o.logger.error({ err: { name: err.name, message: err.message } }, `runpod-local: ${c.req.method} ${c.req.routePath} failed`);
    return c.json({ error: 'internal error' }, 500);
  });
  app.notFound((c) => notFound(c, 'not found'));

  // ---------------------------------------------------------------- client API
  app.use('/v2/:eid/*', async (c, next) => {
    if (!authorized(c)) return unauthorized(c);
    const eid = c.req.param('eid');
    const endpoint = o.endpoints.get(eid);
    if (!endpoint) return notFound(c, `endpoint ${eid} not found`);
    c.set('endpoint', endpoint);
    await next();
  });

  /** Rate and concurrency limits, then injected faults, for one client operation. */
  const op = (name: Operation): MiddlewareHandler<Env> => async (c, next) => {
    const endpoint = c.get('endpoint');
    const release = endpoint.limiter ? endpoint.limiter.admit(name) : () => {};
    if (!release) return c.json({ error: `Too Many Requests: the rate or concurrency limit for /${name} on this endpoint was exceeded` }, 429);
    try {
      const fault = endpoint.faults.forRequest(name);
      if (fault.delayMs > 0) await sleep(fault.delayMs);
      if (fault.status === 429) return c.json({ error: 'Too Many Requests (injected fault)' }, 429);
      if (fault.status !== undefined) return c.json({ error: 'Internal Server Error (injected fault)' }, fault.status as 500);
      await next();
    } finally {
      release();
    }
  };

  const submit = async (c: Context<Env>, sync: boolean): Promise<Job | Response> => {
    let body: unknown;
    try {
      body = JSON.parse(await c.req.text());
    } catch {
      return c.json({ error: 'the request body is not valid JSON' }, 400);
    }
    if (!isRecord(body) || body.input === undefined || body.input === null) {
      return c.json({ error: "the request body must be a JSON object with an 'input' field" }, 400);
    }
    const webhook = typeof body.webhook === 'string' ? body.webhook : undefined;
    const policy = isRecord(body.policy) ? body.policy : {};
    const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : undefined);
    const executionTimeoutMs = num(policy.executionTimeout);
    const ttlMs = num(policy.ttl);
    return c.get('endpoint').store.submit(body.input, {
      sync,
      lowPriority: policy.lowPriority === true,
      ...(webhook !== undefined ? { webhook } : {}),
      ...(executionTimeoutMs !== undefined ? { executionTimeoutMs } : {}),
      ...(ttlMs !== undefined ? { ttlMs } : {}),
    });
  };
  const tooLarge = (limit: number, route: string) =>
    bodyLimit({
      maxSize: limit,
      onError: (c) => c.json({ error: `Payload Too Large: the request body exceeds the ${limit / 1024 / 1024} MB limit for /${route}` }, 413),
    });
  const waitParam = (c: Context) => {
    const raw = Number.parseInt(c.req.query('wait') ?? '', 10);
    return Number.isFinite(raw) ? Math.min(SYNC_WAIT.max, Math.max(SYNC_WAIT.min, raw)) : SYNC_WAIT.default;
  };
  const terminal = (j: Job) => isTerminal(j.status);

  app.post('/v2/:eid/run', op('run'), tooLarge(RUN_BODY_LIMIT, 'run'), async (c) => {
    const job = await submit(c, false);
    if (job instanceof Response) return job;
    if (c.get('endpoint').faults.errorAfterCreate()) return c.json({ error: 'Service Unavailable (injected fault, after the job was created)' }, 503);
    // Like the service, /run answers with the state at submission: a waiting worker may
    // already hold the job by the time this response is written.
    return c.json({ id: job.id, status: 'IN_QUEUE' });
  });

  app.post('/v2/:eid/runsync', op('runsync'), tooLarge(RUNSYNC_BODY_LIMIT, 'runsync'), async (c) => {
    const job = await submit(c, true);
    if (job instanceof Response) return job;
    const { store } = c.get('endpoint');
    await store.waitFor(job, terminal, waitParam(c), c.req.raw.signal);
    return c.json(store.statusBody(job));
  });

  const status = (sync: boolean) => async (c: Context<Env>) => {
    const { store } = c.get('endpoint');
    const job = store.get(c.req.param('id') ?? '');
    if (!job) return notFound(c);
    if (sync) await store.waitFor(job, terminal, waitParam(c), c.req.raw.signal);
    if (terminal(job)) job.ledger.finalAnsweredAt ??= new Date().toISOString();
    return c.json(store.statusBody(job));
  };
  app.get('/v2/:eid/status/:id', op('status'), status(false));
  app.post('/v2/:eid/status/:id', op('status'), status(false));
  app.get('/v2/:eid/status-sync/:id', op('status-sync'), status(true));
  app.post('/v2/:eid/status-sync/:id', op('status-sync'), status(true));

  // Chunks a generator handler streamed, each handed out once; held open until there is one,
  // the job ends, or streamWaitMs passes.
  const stream = async (c: Context<Env>) => {
    const endpoint = c.get('endpoint');
    const job = endpoint.store.get(c.req.param('id') ?? '');
    if (!job) return notFound(c);
    await endpoint.store.waitFor(job, (j) => j.stream.length > j.streamRead || isTerminal(j.status), endpoint.streamWaitMs, c.req.raw.signal);
    const chunks = endpoint.store.readStream(job).map((output) => ({ output }));
    const body: Record<string, unknown> = { status: job.status, stream: chunks };
    if (job.error !== undefined) body.error = job.error;
    return c.json(body);
  };
  app.get('/v2/:eid/stream/:id', op('stream'), stream);
  app.post('/v2/:eid/stream/:id', op('stream'), stream);

  app.post('/v2/:eid/cancel/:id', op('cancel'), (c) => {
    const job = c.get('endpoint').store.cancel(c.req.param('id'));
    return job ? c.json({ id: job.id, status: job.status }) : notFound(c);
  });

  app.post('/v2/:eid/retry/:id', op('retry'), (c) => {
    const { job, error } = c.get('endpoint').store.retry(c.req.param('id'));
    if (!job) return notFound(c);
    if (error) return c.json({ error }, 400);
    return c.json({ id: job.id, status: job.status });
  });

  app.post('/v2/:eid/purge-queue', op('purge-queue'), (c) =>
    c.json({ removed: c.get('endpoint').store.purgeQueue(), status: 'completed' }),
  );

  app.get('/v2/:eid/health', op('health'), (c) => c.json(c.get('endpoint').health()));

  // ---------------------------------------------------------------- REST API (the management API's
  // endpoint and worker views, GET /v2/serverless/{id}[/workers] on the service; here under /rest)
  app.use('/rest/*', async (c, next) => (authorized(c) ? next() : unauthorized(c)));
  app.get('/rest/v2/serverless/:eid', (c) => {
    const e = o.endpoints.get(c.req.param('eid'));
    return e ? c.json(e.restConfig()) : notFound(c, 'endpoint not found');
  });
  app.get('/rest/v2/serverless/:eid/workers', (c) => {
    const e = o.endpoints.get(c.req.param('eid'));
    return e ? c.json(e.restWorkers()) : notFound(c, 'endpoint not found');
  });

  // ---------------------------------------------------------------- admin (same API key)
  app.use('/admin/*', async (c, next) => (authorized(c) ? next() : unauthorized(c)));
  app.get('/admin/ledger', (c) => c.json([...o.endpoints.values()].flatMap((e) => e.ledger())));
  const adminEndpoint = (c: Context) => o.endpoints.get(c.req.param('eid') ?? '');
  app.get('/admin/:eid/ledger', (c) => {
    const e = adminEndpoint(c);
    return e ? c.json(e.ledger()) : notFound(c, 'endpoint not found');
  });
  app.get('/admin/:eid/workers', (c) => {
    const e = adminEndpoint(c);
    return e ? c.json(e.workers()) : notFound(c, 'endpoint not found');
  });
  // What the rate and concurrency limits saw (status counts status-sync); ?reset=1 starts the counts again.
  app.get('/admin/:eid/limits', (c) => {
    const e = adminEndpoint(c);
    if (!e) return notFound(c, 'endpoint not found');
    const stats = { status: e.limiter?.stats('status') ?? null, run: e.limiter?.stats('run') ?? null, cancel: e.limiter?.stats('cancel') ?? null };
    if (c.req.query('reset') === '1') e.limiter?.resetStats();
    return c.json(stats);
  });
  app.get('/admin/:eid/faults', (c) => {
    const e = adminEndpoint(c);
    return e ? c.json(e.faults.get()) : notFound(c, 'endpoint not found');
  });
  app.put('/admin/:eid/faults', async (c) => {
    const e = adminEndpoint(c);
    if (!e) return notFound(c, 'endpoint not found');
    let body: unknown;
    try {
      body = JSON.parse(await c.req.text());
    } catch {
      return c.json({ error: 'the request body is not valid JSON' }, 400);
    }
    const parsed = FaultConfig.safeParse(body);
    if (!parsed.success) return c.json({ error: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') }, 400);
    e.setFaults(parsed.data);
    return c.json(e.faults.get());
  });

  // ---------------------------------------------------------------- worker API
  // The SDK authenticates with `Authorization: <RUNPOD_AI_API_KEY>` (no "Bearer"), as the service
  // expects. Each worker process also gets its own token in its webhook URLs' query string (the
  // SDK keeps query strings when it derives job-take-batch, job-stop and the done/stream URLs),
  // so a late request from a replaced process is told apart.
  type WorkerHandler = (c: Context, inc: Incarnation, endpoint: LocalEndpoint) => Response | Promise<Response>;
  const workerAuthorized = (c: Context): boolean => {
    const key = c.req.header('authorization') ?? '';
    return key.length > 0 && timingSafeEqual(digest(key), keyDigest);
  };
  const worker = (handler: WorkerHandler) => (c: Context) => {
    if (!workerAuthorized(c)) return unauthorized(c);
    const endpoint = o.endpoints.get(c.req.param('eid') ?? '');
    if (!endpoint) return notFound(c, 'endpoint not found');
    const inc = endpoint.supervisor.incarnation(c.req.query('token'), c.req.param('wid') ?? '');
    return inc ? handler(c, inc, endpoint) : unauthorized(c);
  };

  const take = (batch: boolean): WorkerHandler => async (c, inc, endpoint) => {
    if (c.req.query('job_in_progress') === '0') settleIdle(inc, endpoint);
    // No GPU free (the noCapacity fault): an idle worker is handed nothing, as if it were not there.
    if (endpoint.faults.noCapacity()) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, endpoint.takePollMs);
        c.req.raw.signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
      });
      return c.body(null, 204);
    }
    const asked = batch ? Math.max(1, Number.parseInt(c.req.query('batch_size') ?? '1', 10) || 1) : 1;
    const max = () => Math.min(asked, endpoint.supervisor.capacity(inc));
    const jobs = await endpoint.store.take(inc.token, inc.workerId, max, endpoint.takePollMs, c.req.raw.signal);
    if (jobs.length === 0) return c.body(null, 204);
    for (const job of jobs) {
      if (endpoint.maybeCrash('take', inc, job)) break;
    }
    const wire = jobs.map((j) => ({ id: j.id, input: j.input }));
    return c.json(batch ? wire : wire[0]);
  };
  // A job-take saying "nothing in progress" proves the worker let go of every job it held:
  // cancelled ones are settled, and any still IN_PROGRESS here were dropped without a result.
  const settleIdle = (inc: Incarnation, endpoint: LocalEndpoint) => {
    endpoint.supervisor.noteIdle(inc);
    const dropped = endpoint.store.failHeldBy(
      inc.token,
      `worker ${inc.workerId} stopped running this job without reporting a result`,
    );
    if (dropped > 0) o.logger.warn({ worker: inc.workerId }, `worker ${inc.workerId} dropped ${dropped} job(s)`);
  };
  app.get('/worker/:eid/job-take/:wid', worker(take(false)));
  app.get('/worker/:eid/job-take-batch/:wid', worker(take(true)));

  app.get(
    '/worker/:eid/job-stop/:wid',
    worker(async (c, inc, endpoint) => {
      const ids = await endpoint.supervisor.waitStops(inc, endpoint.stopPollMs, c.req.raw.signal);
      return ids.length === 0 ? c.body(null, 204) : c.json({ jobsToStop: ids });
    }),
  );

  const readDone = async (c: Context): Promise<DoneBody | undefined> => {
    try {
      const body: unknown = JSON.parse(await c.req.text());
      return isRecord(body) ? body : undefined;
    } catch {
      return undefined;
    }
  };
  const workerLimit = bodyLimit({ maxSize: WORKER_BODY_LIMIT, onError: (c) => c.json({ error: 'result too large' }, 413) });

  app.post(
    '/worker/:eid/job-done/:wid/:id',
    workerLimit,
    worker(async (c, inc, endpoint) => {
      const body = await readDone(c);
      if (!body) return c.json({ error: 'the body must be a JSON object' }, 400);
      const id = c.req.param('id') ?? '';
      const job = endpoint.store.get(id);
      const held = job?.holder === inc.token && job.status === 'IN_PROGRESS' ? job : undefined;
      const point = body.status === 'IN_PROGRESS' ? 'progress' : 'result';
      // Injected crash: the worker dies before its report is recorded.
      if (held && endpoint.maybeCrash(point, inc, held)) return c.json({ error: 'worker crashed (injected fault)' }, 500);
      const outcome = endpoint.store.report(id, inc.token, body, c.req.query('isStream') === 'true');
      if (outcome === 'ignored') {
        o.logger.info({ worker: inc.workerId, job: id }, 'ignored a report for a job this worker no longer holds');
      }
      if (outcome === 'finished') endpoint.store.dispatch();
      return c.json({});
    }),
  );

  app.post(
    '/worker/:eid/job-stream/:wid/:id',
    workerLimit,
    worker(async (c, inc, endpoint) => {
      const body = await readDone(c);
      if (!body) return c.json({ error: 'the body must be a JSON object' }, 400);
      endpoint.store.streamChunk(c.req.param('id') ?? '', inc.token, body);
      return c.json({});
    }),
  );

  // The SDK's heartbeat: ?job_id=a,b (the jobs in progress) &runpod_version=...
  app.get(
    '/worker/:eid/ping/:wid',
    worker((c, inc, endpoint) => {
      const ids = c.req.queries('job_id') ?? [];
      endpoint.supervisor.notePing(inc, ids.flatMap((v) => v.split(',')).filter((v) => v.length > 0));
      return c.json({});
    }),
  );

  return app;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
