// runpod-local against the official clients (runpod-sdk for JavaScript, runpod.Endpoint for
// Python), both unmodified and pointed at it by their base-URL settings, and the rest of the
// client API: runsync, status-sync, stream, retry, result retention, payload and rate
// limits, webhooks, fault injection, several endpoints on one server. Real processes, no mocks.
import { execFile } from 'node:child_process';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import runpodSdk from 'runpod-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunpodClient, RunpodHttpError, RunpodJobNotFound, type RunpodJobStatus } from '../lib/runpod-client.js';
import { StatusPoller } from '../lib/status-poller.js';
import { startRunpodLocal, type RunpodLocal } from '../runpod-local/index.js';
import { until } from '../testkit/wait.js';

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const PYTHON = process.env.LORAFLOW_PYTHON ?? fileURLToPath(new URL('../.tools/pyenv/bin/python', import.meta.url));
const API_KEY = 'rl-clients-key-83a1';
const logger = pino({ level: process.env.RUNPOD_LOCAL_TEST_LOGS ? 'info' : 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let rl: RunpodLocal;
const client = (endpointId: string) => new RunpodClient({ baseUrl: rl.url, apiKey: API_KEY, endpointId });

const final = (s: RunpodJobStatus) => ['COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT'].includes(s.status);

beforeAll(async () => {
  rl = await startRunpodLocal({
    port: 0,
    apiKey: API_KEY,
    workerCommand: [PYTHON, fixture('sdk_handler.py')],
    workers: 1,
    cancelGraceMs: 2_000,
    stopGraceMs: 3_000,
    syncResultTtlMs: 1_500,
    logger,
    endpoints: [
      { endpointId: 'stream', workerCommand: [PYTHON, fixture('sdk_stream_handler.py')], workers: 1 },
      {
        endpointId: 'stream-agg',
        workerCommand: [PYTHON, fixture('sdk_stream_handler.py')],
        workerEnv: { HANDLER_KIND: 'sync', STREAM_AGGREGATE: '1' },
        workers: 1,
      },
      // No workers: jobs stay queued. Tight limits on /run; fast webhook retries.
      { endpointId: 'idle', workerCommand: [], workers: 0, rateLimits: { run: 5 }, webhookRetryDelayMs: 200 },
      // No workers and the service's own limits: the concurrency test must not meet the /run
      // window the rate-limit test on 'idle' has just used up.
      { endpointId: 'queued', workerCommand: [], workers: 0 },
      // Each limit test gets its own endpoint's windows: the service's defaults, no workers.
      { endpointId: 'limits', workerCommand: [], workers: 0 },
      { endpointId: 'polled', workerCommand: [], workers: 0 },
    ],
  });
}, 30_000);

afterAll(async () => {
  await rl?.stop();
});

describe('the official JavaScript client (runpod-sdk)', () => {
  const sdk = () => runpodSdk(API_KEY, { baseUrl: rl.url });

  it('runs and polls a job, runs one synchronously, and cancels one', async () => {
    const endpoint = sdk().endpoint('local')!;
    const { id, status } = await endpoint.run({ input: { mode: 'echo', via: 'js' } });
    expect(status).toBe('IN_QUEUE');
    const done = await until(
      () => endpoint.status(id) as Promise<{ status: string; output?: unknown; completed?: boolean }>,
      (s) => s.completed === true,
    );
    expect(done).toMatchObject({ status: 'COMPLETED', output: { echo: { mode: 'echo', via: 'js' }, worker: 'w-1' }, succeeded: true });

    const sync = await endpoint.runSync({ input: { mode: 'echo', via: 'js-sync' } }, 20_000);
    expect(sync).toMatchObject({ status: 'COMPLETED', output: { echo: { via: 'js-sync' } }, completed: true });
    expect(sync.id).toMatch(/^sync-/);

    // statusSync waits for the job to finish.
    const slowish = await endpoint.run({ input: { mode: 'asleep', seconds: 1 } });
    const waited = await endpoint.statusSync(slowish.id, 15_000);
    expect(waited).toMatchObject({ status: 'COMPLETED', output: { slept: 1 } });

    const long = await endpoint.run({ input: { mode: 'asleep', seconds: 60 } });
    await until(() => endpoint.status(long.id), (s) => s.status === 'IN_PROGRESS');
    expect(await endpoint.cancel(long.id)).toMatchObject({ id: long.id, status: 'CANCELLED' });
    expect((await endpoint.status(long.id)).status).toBe('CANCELLED');

    const health = await endpoint.health();
    expect(health.jobs.completed).toBeGreaterThanOrEqual(3);
    expect(health.workers.idle + health.workers.running).toBe(1);
    expect(await endpoint.purgeQueue()).toEqual({ removed: 0, status: 'completed' });
  }, 60_000);

  it('streams a generator handler’s chunks as they are produced', async () => {
    const endpoint = sdk().endpoint('stream')!;
    const { id } = await endpoint.run({ input: { chunks: 4, sleep: 0.3 } });
    const got: unknown[] = [];
    const firstAt: number[] = [];
    const started = Date.now();
    for await (const chunk of endpoint.stream(id)) {
      got.push(chunk);
      firstAt.push(Date.now() - started);
    }
    expect(got).toEqual([0, 1, 2, 3].map((i) => ({ output: { chunk: i } })));
    // Chunks arrive while the job runs, not all at the end.
    expect(firstAt[0]!).toBeLessThan(firstAt[3]! - 300);
    expect(((await endpoint.status(id)) as { status: string }).status).toBe('COMPLETED');
  }, 30_000);
});

describe('the official Python client (runpod.Endpoint)', () => {
  const runPython = async (endpointId: string, scenario: string) => {
    const { stdout } = await promisify(execFile)(PYTHON, [fixture('runpod_python_client.py'), endpointId, scenario], {
      env: { ...process.env, RUNPOD_ENDPOINT_BASE_URL: rl.url, RUNPOD_API_KEY: API_KEY },
      timeout: 60_000,
    });
    return JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
  };

  it('runs, polls, runs synchronously, cancels, reads health and purges the queue', async () => {
    const out = await runPython('local', 'basic');
    expect(out.base).toBe(rl.url);
    expect(['IN_QUEUE', 'IN_PROGRESS', 'COMPLETED']).toContain(out.first_status);
    expect(out.output).toEqual({ echo: { mode: 'echo', via: 'python' }, worker: 'w-1' });
    expect(out.status).toBe('COMPLETED');
    expect(out.run_sync).toEqual({ echo: { mode: 'echo', via: 'python-sync' }, worker: 'w-1' });
    expect(out.cancel).toMatchObject({ status: 'CANCELLED' });
    expect(out.cancelled_status).toBe('CANCELLED');
    expect(out.health).toMatchObject({ jobs: { inQueue: 0 }, workers: expect.any(Object) });
    expect(out.purge).toEqual({ removed: 0, status: 'completed' });
  }, 60_000);

  it('streams a generator handler', async () => {
    const out = await runPython('stream', 'stream');
    expect(out.chunks).toEqual([0, 1, 2, 3].map((i) => ({ chunk: i })));
    expect(out.status).toBe('COMPLETED');
  }, 60_000);
});

describe('client API', () => {
  it('runsync answers the finished job; its result is gone after the sync retention', async () => {
    const c = client('local');
    const s = await c.runsync({ mode: 'echo', n: 1 }, { waitMs: 20_000 });
    expect(s).toMatchObject({ status: 'COMPLETED', output: { echo: { n: 1 } } });
    expect((await c.status(s.id)).status).toBe('COMPLETED');
    await sleep(1_700); // syncResultTtlMs 1.5 s
    await expect(c.status(s.id)).rejects.toBeInstanceOf(RunpodJobNotFound);
  }, 30_000);

  it('runsync answers IN_QUEUE after ?wait= when no worker takes the job', async () => {
    const c = client('idle');
    const t = Date.now();
    const s = await c.runsync({ n: 2 }, { waitMs: 1_000 });
    expect(Date.now() - t).toBeGreaterThanOrEqual(950);
    expect(s.status).toBe('IN_QUEUE');
    expect((await c.cancel(s.id)).status).toBe('CANCELLED');
  });

  it('a generator handler’s chunks: /stream hands each out once; aggregated output in /status; errors FAIL the job', async () => {
    const c = client('stream-agg');
    const { id } = await c.run({ chunks: 3, sleep: 0.2 });
    const seen: unknown[] = [];
    let last;
    do {
      last = await c.stream(id);
      seen.push(...last.stream.map((ch) => ch.output));
    } while (!final(last as unknown as RunpodJobStatus));
    expect(seen).toEqual([{ chunk: 0 }, { chunk: 1 }, { chunk: 2 }]);
    expect((await c.stream(id)).stream).toEqual([]);
    const s = await c.status(id);
    expect(s).toMatchObject({ status: 'COMPLETED', output: [{ chunk: 0 }, { chunk: 1 }, { chunk: 2 }] });
    expect(rl.endpoint('stream-agg').ledger().find((e) => e.id === id)?.streamChunks).toBe(3);

    const broken = await c.run({ chunks: 3, fail_after: 1, sleep: 0.1 });
    const b = await until(() => c.status(broken.id), final);
    expect(b.status).toBe('FAILED');
    expect(b.error).toMatch(/stream broke/);
  }, 30_000);

  it('retries a FAILED job under the same id, and refuses to retry a COMPLETED one', async () => {
    const c = client('local');
    const { id } = await c.run({ mode: 'error' });
    expect((await until(() => c.status(id), final)).status).toBe('FAILED');
    expect(await c.retry(id)).toEqual({ id, status: 'IN_QUEUE' });
    const again = await until(() => c.status(id), final);
    expect(again.status).toBe('FAILED'); // same input, same handler answer
    const entry = rl.ledger().find((e) => e.id === id)!;
    expect(entry.retries).toBe(1);
    expect(entry.attempts).toHaveLength(2);

    const ok = await c.runsync({ mode: 'echo' }, { waitMs: 20_000 });
    const err = await c.retry(ok.id).catch((e: unknown) => e);
    expect((err as RunpodHttpError).status).toBe(400);
    expect((await c.health()).jobs.retried).toBeGreaterThanOrEqual(1);
  }, 30_000);

  it('limits /run to 10 MB and /runsync to 20 MB with the service’s 413', async () => {
    const c = client('idle');
    const blob = 'x'.repeat(15 * 1024 * 1024);
    const runErr = await c.run({ blob }).catch((e: unknown) => e);
    expect((runErr as RunpodHttpError).status).toBe(413);
    const s = await c.runsync({ blob }, { waitMs: 1_000 });
    expect(s.status).toBe('IN_QUEUE');
    await c.cancel(s.id);
    const big = await c.runsync({ blob: 'x'.repeat(21 * 1024 * 1024) }, { waitMs: 1_000 }).catch((e: unknown) => e);
    expect((big as RunpodHttpError).status).toBe(413);
    expect((big as Error).message).toMatch(/20 MB/);
  }, 30_000);

  it('posts the result to the job’s webhook, retrying a failed delivery', async () => {
    const received: Array<{ body: Record<string, unknown> }> = [];
    let calls = 0;
    const hook: Server = createServer((req: IncomingMessage, res) => {
      let data = '';
      req.on('data', (d: Buffer) => (data += d.toString()));
      req.on('end', () => {
        calls++;
        if (calls === 1) {
          res.statusCode = 503; // the first delivery fails
        } else {
          received.push({ body: JSON.parse(data) as Record<string, unknown> });
        }
        res.end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(hook.address() as { port: number }).port}/hook?sig=secret`;
      const c = client('idle');
      const { id } = await c.run({ n: 4 }, { webhook: url });
      await c.cancel(id);
      await until(async () => received.length, (n) => n === 1, 5_000);
      expect(calls).toBe(2);
      expect(received[0]!.body).toMatchObject({ id, status: 'CANCELLED' });
      expect(rl.endpoint('idle').ledger().find((e) => e.id === id)?.webhook).toEqual({ attempts: 2, delivered: true, lastStatus: 200 });
    } finally {
      hook.close();
    }
  });

  it('answers 429 beyond the endpoint’s rate limit (per endpoint and operation)', async () => {
    const c = client('idle');
    const results = [];
    for (let i = 0; i < 7; i++) results.push(await c.run({ i }).then(() => 200, (e: RunpodHttpError) => e.status));
    expect(results.filter((s) => s === 200).length).toBeLessThanOrEqual(5);
    expect(results.at(-1)).toBe(429);
    expect(await client('local').health()).toBeTruthy(); // other endpoints are not affected
    await c.purgeQueue();
    await c.purgeQueue().catch(() => {});
    const third = await c.purgeQueue().catch((e: RunpodHttpError) => e);
    expect((third as RunpodHttpError).status).toBe(429); // 2 per 10 s
  });

  it('answers 429 beyond the service’s 400 concurrent status requests: a held /status-sync counts', async () => {
    const c = client('queued');
    const { id } = await c.run({ held: true });
    const held = Array.from({ length: 400 }, () => c.statusSync(id, 2_000).then(() => 200, (e: RunpodHttpError) => e.status));
    await until(() => rl.endpoint('queued').openStatusRequests(), (n) => n === 400, 10_000, 20);
    expect(await c.status(id).then(() => 200, (e: RunpodHttpError) => e.status)).toBe(429);
    expect((await Promise.all(held)).every((s) => s === 200)).toBe(true);
    expect((await c.status(id)).status).toBe('IN_QUEUE'); // free again once they return
  });

  it('answers 429 past the service’s 2,000 status requests per 10 s, and counts what it admitted and refused', async () => {
    const c = client('limits');
    const { id } = await c.run({ held: true });
    rl.endpoint('limits').resetLimitStats();
    // Plain fetches, 200 at a time (half the concurrency limit): fast enough to fill one window.
    const url = `${rl.url}/limits/status/${id}`;
    let next = 0;
    const codes: number[] = [];
    await Promise.all(
      Array.from({ length: 200 }, async () => {
        while (next++ < 2_600) codes.push((await fetch(url, { headers: { authorization: `Bearer ${API_KEY}` } }).then(async (r) => (await r.arrayBuffer(), r.status))));
      }),
    );
    const seen = rl.endpoint('limits').limitStats('status')!;
    expect(seen).toMatchObject({ maxPerWindow: 2_000, refusedConcurrency: 0, limitPerWindow: 2_000, limitConcurrent: 400 });
    expect(seen.refusedRate).toBeGreaterThan(0);
    expect(codes.filter((s) => s === 429)).toHaveLength(seen.refusedRate);
    expect(codes.filter((s) => s === 200)).toHaveLength(seen.admitted);
    expect(seen.maxInFlight).toBeLessThanOrEqual(200);
    // The same counts over the admin route.
    const base = rl.url.replace(/\/v2$/, '');
    const admin = (await (await fetch(`${base}/admin/limits/limits?reset=1`, { headers: { authorization: `Bearer ${API_KEY}` } })).json()) as { status: { refusedRate: number } };
    expect(admin.status.refusedRate).toBe(seen.refusedRate);
    expect(rl.endpoint('limits').limitStats('status')).toMatchObject({ admitted: 0, refusedRate: 0 });
  });

  it('one StatusPoller watching 600 jobs stays within the endpoint’s status limits and hears of each cancel', async () => {
    const c = client('polled');
    let made = 0;
    const ids: string[] = [];
    await Promise.all(Array.from({ length: 20 }, async () => {
      while (made++ < 600) ids.push((await c.run({ i: made })).id);
    }));
    const stats = rl.endpoint('polled');
    stats.resetLimitStats();
    // The whole of the limits (share 1): a long-poll each would be 600 at once, 200 past the 400.
    const poller = new StatusPoller(c, { share: 1, longPollMs: 10_000, minIntervalMs: 1_000 });
    const noticed = new Map<string, string>();
    const done = new AbortController();
    const waiters = ids.map(async (id) => {
      let seen: RunpodJobStatus | undefined;
      while (!done.signal.aborted) {
        const s = await poller.watch(id, seen, { maxWaitMs: 10_000, signal: done.signal }).catch(() => undefined);
        if (s) seen = s;
        if (s && final(s)) return noticed.set(id, s.status);
      }
    });
    await sleep(3_000);
    const cancelled = ids.filter((_, i) => i % 30 === 7); // 20 jobs, long-polled or not
    for (const id of cancelled) await c.cancel(id);
    await until(() => cancelled.filter((id) => noticed.get(id) === 'CANCELLED').length, (n) => n === cancelled.length, 20_000);
    const seen = stats.limitStats('status')!;
    expect(seen.refusedConcurrency + seen.refusedRate).toBe(0);
    expect(seen.maxInFlight).toBeLessThanOrEqual(400);
    expect(seen.maxPerSecond).toBeLessThanOrEqual(200);
    expect(seen.maxInFlight).toBeGreaterThan(300); // the long-polls were held
    expect(poller.stats()).toMatchObject({ throttled: 0 });
    done.abort();
    await Promise.all(waiters);
    await c.purgeQueue();
  }, 60_000);

  it('injects 429s, 5xx and latency through the admin route, and turns them off again', async () => {
    const base = rl.url.replace(/\/v2$/, '');
    const put = (body: unknown) =>
      fetch(`${base}/admin/local/faults`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const c = client('local');
    expect((await put({ api: { throttleRate: 1, operations: ['health'] } })).status).toBe(200);
    expect(((await c.health().catch((e: unknown) => e)) as RunpodHttpError).status).toBe(429);
    expect(await c.purgeQueue()).toBeTruthy(); // other operations untouched
    expect((await put({ api: { errorRate: 1, errorStatus: 503, latencyMs: 300 } })).status).toBe(200);
    const t = Date.now();
    expect(((await c.health().catch((e: unknown) => e)) as RunpodHttpError).status).toBe(503);
    expect(Date.now() - t).toBeGreaterThanOrEqual(280);
    expect((await put({ api: { errorRate: 7 } })).status).toBe(400);
    expect((await put({})).status).toBe(200);
    expect((await c.health()).jobs).toBeTruthy();
    const faults = (await (await fetch(`${base}/admin/local/faults`, { headers: { authorization: `Bearer ${API_KEY}` } })).json()) as {
      injected: { throttled: number; errors: number };
    };
    expect(faults.injected).toMatchObject({ throttled: 1, errors: 1 });
    expect((await fetch(`${base}/admin/local/faults`, { method: 'PUT', body: '{}' })).status).toBe(401);
  });

  it('hosts several endpoints, each with its own jobs, workers and ledger', async () => {
    expect(rl.workers().map((w) => `${w.endpointId}/${w.workerId}`).sort()).toEqual(['local/w-1', 'stream-agg/w-1', 'stream/w-1']);
    const eps = new Set(rl.ledger().map((e) => e.endpointId));
    expect([...eps].sort()).toEqual(['idle', 'limits', 'local', 'polled', 'queued', 'stream', 'stream-agg']);
    for (const e of rl.endpoint('stream').ledger()) expect(e.endpointId).toBe('stream');
    const other = await client('nope').health().catch((e: unknown) => e);
    expect((other as RunpodHttpError).status).toBe(404);
    const res = await fetch(`${rl.url.replace(/\/v2$/, '')}/admin/stream/ledger`, { headers: { authorization: `Bearer ${API_KEY}` } });
    expect(await res.json()).toEqual(rl.endpoint('stream').ledger());
  });
});
