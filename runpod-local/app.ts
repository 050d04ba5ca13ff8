// HTTP routes: RunPod's client API under /v2/{endpointId}, the worker API the runpod Python SDK
// calls under /worker/{endpointId}, and /admin/ledger. Inputs and results are never logged.
import { createHash, timingSafeEqual } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Logger } from 'pino';
import { isRecord, type DoneBody, type JobStore } from './jobs.js';
import type { Incarnation, Supervisor } from './supervisor.js';

/** RunPod's limit for a /run request body. */
export const RUN_BODY_LIMIT = 10 * 1024 * 1024;
const WORKER_BODY_LIMIT = 64 * 1024 * 1024;

export interface AppOptions {
  endpointId: string;
  apiKey: string;
  store: JobStore;
  supervisor: Supervisor;
  logger: Logger;
  /** How long job-take holds a request open when the queue is empty. */
  takePollMs: number;
  /** How long job-stop holds a request open when nothing is to be stopped. */
  stopPollMs: number;
}

export function createApp(o: AppOptions): Hono {
  const app = new Hono();
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
  app.use('/v2/*', async (c, next) => {
    if (!authorized(c)) return unauthorized(c);
    const eid = c.req.path.split('/')[2];
    if (eid !== o.endpointId) return notFound(c, `endpoint ${eid ?? ''} not found`);
    await next();
  });

  app.post(
    '/v2/:eid/run',
    bodyLimit({
      maxSize: RUN_BODY_LIMIT,
      onError: (c) =>
        c.json({ error: `Payload Too Large: the request body exceeds the ${RUN_BODY_LIMIT / 1024 / 1024} MB limit for /run` }, 413),
    }),
    async (c) => {
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
      const executionTimeoutMs = typeof policy.executionTimeout === 'number' ? policy.executionTimeout : undefined;
      const job = o.store.submit(body.input, {
        ...(webhook !== undefined ? { webhook } : {}),
        ...(executionTimeoutMs !== undefined ? { executionTimeoutMs } : {}),
      });
      return c.json({ id: job.id, status: job.status });
    },
  );

  const status = (c: Context) => {
    const job = o.store.get(c.req.param('id') ?? '');
    return job ? c.json(o.store.statusBody(job)) : notFound(c);
  };
  app.get('/v2/:eid/status/:id', status);
  app.post('/v2/:eid/status/:id', status);

  app.post('/v2/:eid/cancel/:id', (c) => {
    const job = o.store.cancel(c.req.param('id'));
    return job ? c.json({ id: job.id, status: job.status }) : notFound(c);
  });

  app.post('/v2/:eid/purge-queue', (c) => c.json({ removed: o.store.purgeQueue(), status: 'completed' }));

  app.get('/v2/:eid/health', (c) => {
    const workers = { idle: 0, initializing: 0, ready: 0, running: 0, throttled: 0, unhealthy: 0 };
    for (const w of o.supervisor.workers()) {
      if (w.state === 'idle') workers.idle++;
      else if (w.state === 'running') workers.running++;
      else if (w.state === 'starting' || w.state === 'restarting') workers.initializing++;
      if (w.ready) workers.ready++;
    }
    return c.json({ jobs: o.store.counts(), workers });
  });

  app.get('/admin/ledger', (c) => (authorized(c) ? c.json(o.store.ledger()) : unauthorized(c)));

  // ---------------------------------------------------------------- worker API
  // Each worker process gets its own token in its webhook URLs' query string; the SDK keeps
  // query strings when it derives job-take-batch, job-stop and the done/stream URLs.
  type WorkerHandler = (c: Context, inc: Incarnation) => Response | Promise<Response>;
  const worker = (handler: WorkerHandler) => (c: Context) => {
    if (c.req.param('eid') !== o.endpointId) return notFound(c, 'endpoint not found');
    const inc = o.supervisor.incarnation(c.req.query('token'), c.req.param('wid') ?? '');
    return inc ? handler(c, inc) : unauthorized(c);
  };

  const take = (batch: boolean): WorkerHandler => async (c, inc) => {
    if (c.req.query('job_in_progress') === '0') settleIdle(inc);
    const max = batch ? Math.max(1, Number.parseInt(c.req.query('batch_size') ?? '1', 10) || 1) : 1;
    const jobs = await o.store.take(inc.token, inc.workerId, max, o.takePollMs, c.req.raw.signal);
    if (jobs.length === 0) return c.body(null, 204);
    const wire = jobs.map((j) => ({ id: j.id, input: j.input }));
    return c.json(batch ? wire : wire[0]);
  };
  // A job-take saying "nothing in progress" proves the worker let go of every job it held:
  // cancelled ones are settled, and any still IN_PROGRESS here were dropped without a result.
  const settleIdle = (inc: Incarnation) => {
    o.supervisor.noteIdle(inc);
    const dropped = o.store.failHeldBy(
      inc.token,
      `worker ${inc.workerId} stopped running this job without reporting a result`,
    );
    if (dropped > 0) o.logger.warn({ worker: inc.workerId }, `worker ${inc.workerId} dropped ${dropped} job(s)`);
  };
  app.get('/worker/:eid/job-take/:wid', worker(take(false)));
  app.get('/worker/:eid/job-take-batch/:wid', worker(take(true)));

  app.get(
    '/worker/:eid/job-stop/:wid',
    worker(async (c, inc) => {
      const ids = await o.supervisor.waitStops(inc, o.stopPollMs, c.req.raw.signal);
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
    worker(async (c, inc) => {
      const body = await readDone(c);
      if (!body) return c.json({ error: 'the body must be a JSON object' }, 400);
      const id = c.req.param('id') ?? '';
      const outcome = o.store.report(id, inc.token, body, c.req.query('isStream') === 'true');
      if (outcome === 'ignored') {
        o.logger.info({ worker: inc.workerId, job: id }, 'ignored a report for a job this worker no longer holds');
      }
      return c.json({});
    }),
  );

  app.post(
    '/worker/:eid/job-stream/:wid/:id',
    workerLimit,
    worker(async (c, inc) => {
      const body = await readDone(c);
      if (!body) return c.json({ error: 'the body must be a JSON object' }, 400);
      o.store.streamChunk(c.req.param('id') ?? '', inc.token, body);
      return c.json({});
    }),
  );

  app.get('/worker/:eid/ping/:wid', worker((c) => c.json({})));

  return app;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
