// runpod-local against the real runpod Python SDK worker loop (test/fixtures/sdk_handler.py),
// driven through lib/runpod-client.ts. Real processes, no mocks. One endpoint is shared by the
// tests, which run in order.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  RunpodClient,
  RunpodHttpError,
  RunpodJobNotFound,
  type RunpodJobState,
  type RunpodJobStatus,
} from '../lib/runpod-client.js';
import { startRunpodLocal, type RunpodLocal } from '../runpod-local/index.js';
import { groupAlive, until } from '../testkit/wait.js';

const PYTHON = process.env.LORAFLOW_PYTHON ?? fileURLToPath(new URL('../.tools/pyenv/bin/python', import.meta.url));
const HANDLER = fileURLToPath(new URL('./fixtures/sdk_handler.py', import.meta.url));
const AUTH_PROBE = fileURLToPath(new URL('./fixtures/auth_probe_worker.py', import.meta.url));
const CLI = fileURLToPath(new URL('../runpod-local/cli.ts', import.meta.url));
const API_KEY = 'rl-test-key-5f1c0d';
const PRESIGNED = 'https://bucket.s3.example.com/datasets/a.zip?X-Amz-Credential=AKIDEXAMPLE&X-Amz-Signature=deadbeefsecret';

/** Every log line runpod-local writes (worker output included), to check redaction. */
const logLines: string[] = [];
const logger = pino(
  { level: 'debug' },
  new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(chunk.toString());
      if (process.env.RUNPOD_LOCAL_TEST_LOGS) process.stderr.write(chunk);
      done();
    },
  }),
);

let rl: RunpodLocal;
let client: RunpodClient;
const submitted: string[] = [];
const seenPids = new Set<number>();

async function run(input: Record<string, unknown>): Promise<string> {
  const { id, status } = await client.run(input);
  expect(status).toBe('IN_QUEUE');
  submitted.push(id);
  return id;
}

async function waitFor(
  id: string,
  done: (s: RunpodJobStatus) => boolean,
  timeoutMs = 20_000,
): Promise<RunpodJobStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: RunpodJobStatus | undefined;
  while (Date.now() < deadline) {
    last = await client.status(id);
    if (done(last)) return last;
    await sleep(100);
  }
  throw new Error(`job ${id} did not reach the expected state; last status ${JSON.stringify(last)}`);
}
const waitState = (id: string, ...states: RunpodJobState[]) => waitFor(id, (s) => states.includes(s.status));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function workerPid(): number {
  const pid = rl.workers()[0]?.pid;
  if (pid === undefined) throw new Error('worker w-1 has no process');
  seenPids.add(pid);
  return pid;
}
async function waitUntil(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

beforeAll(async () => {
  rl = await startRunpodLocal({
    port: 0,
    apiKey: API_KEY,
    workerCommand: [PYTHON, HANDLER],
    workers: 1,
    cancelGraceMs: 6_000, // room for the SDK's job-stop poll on a loaded 2-core machine
    stopGraceMs: 3_000,
    logger,
  });
  client = new RunpodClient({ baseUrl: rl.url, apiKey: API_KEY, endpointId: 'local' });
});

afterAll(async () => {
  await rl?.stop();
});

describe('runpod-local with the runpod SDK worker', () => {
  it('runs a job to COMPLETED with its output and timings', async () => {
    const id = await run({ mode: 'echo', task: 'echo', url: PRESIGNED });
    const s = await waitState(id, 'COMPLETED', 'FAILED');
    expect(s.status).toBe('COMPLETED');
    expect(s.output).toEqual({ echo: { mode: 'echo', task: 'echo', url: PRESIGNED }, worker: 'w-1' });
    expect(s.workerId).toBe('w-1');
    expect(s.delayTime).toBeTypeOf('number');
    expect(s.executionTime).toBeTypeOf('number');
    expect(s.delayTime!).toBeGreaterThanOrEqual(0);
    expect(s.executionTime!).toBeGreaterThanOrEqual(0);
    workerPid();
  });

  it('shows progress updates as IN_PROGRESS with the latest payload', async () => {
    const id = await run({ mode: 'progress', task: 'progress', steps: 4, sleep: 0.6 });
    const mid = await waitFor(id, (s) => s.status !== 'IN_QUEUE' && (s.output as { step?: number } | undefined)?.step === 2);
    expect(mid.status).toBe('IN_PROGRESS');
    expect(mid.output).toEqual({ step: 2, of: 4 });
    const done = await waitState(id, 'COMPLETED', 'FAILED');
    expect(done.status).toBe('COMPLETED');
    expect(done.output).toEqual({ steps: 4 });
    expect(rl.ledger().find((e) => e.id === id)?.progressUpdates).toBe(4);
  });

  it('reports a handler error as FAILED with the error string', async () => {
    const id = await run({ mode: 'error' });
    const s = await waitState(id, 'COMPLETED', 'FAILED');
    expect(s.status).toBe('FAILED');
    expect(s.error).toBe('[INPUT] bad thing');
  });

  it('reports a raised exception as FAILED', async () => {
    const id = await run({ mode: 'raise' });
    const s = await waitState(id, 'COMPLETED', 'FAILED');
    expect(s.status).toBe('FAILED');
    const err = JSON.parse(s.error!) as { error_type: string; error_message: string };
    expect(err.error_message).toBe('boom from handler');
    expect(err.error_type).toContain('RuntimeError');
  });

  it('cancels a running cooperative job through the SDK stop channel, without a restart', async () => {
    const restarts = rl.workers()[0]!.restarts;
    const id = await run({ mode: 'asleep', seconds: 60 });
    await waitState(id, 'IN_PROGRESS');
    expect(await client.cancel(id)).toEqual({ id, status: 'CANCELLED' });
    expect((await client.status(id)).status).toBe('CANCELLED');
    const entry = rl.ledger().find((e) => e.id === id)!;
    expect(entry.status).toBe('CANCELLED');
    expect(entry.finishedAt).toBeTypeOf('string');

    const next = await run({ mode: 'echo', n: 1 });
    expect((await waitState(next, 'COMPLETED', 'FAILED')).status).toBe('COMPLETED');
    expect(rl.workers()[0]!.restarts).toBe(restarts);
    expect((await client.status(id)).status).toBe('CANCELLED');
  });

  it('times a job out after its policy.executionTimeout (TIMED_OUT)', async () => {
    const { id } = await client.run({ mode: 'asleep', seconds: 60 }, { policy: { executionTimeout: 1_000 } });
    submitted.push(id);
    const s = await waitState(id, 'TIMED_OUT', 'COMPLETED', 'FAILED');
    expect(s.status).toBe('TIMED_OUT');
    expect(s.error).toMatch(/execution timeout/);
    expect(s.executionTime!).toBeGreaterThanOrEqual(1_000);
  });

  it('kills a worker that keeps running a cancelled job and runs the next job on a fresh one', async () => {
    const restarts = rl.workers()[0]!.restarts;
    const id = await run({ mode: 'sleep', seconds: 60 }); // blocks the SDK's event loop
    await waitState(id, 'IN_PROGRESS');
    const pid = workerPid();
    expect((await client.cancel(id)).status).toBe('CANCELLED');
    expect((await client.status(id)).status).toBe('CANCELLED');
    await waitUntil(() => !groupAlive(pid), 20_000, 'the worker that ignored the stop to be killed');

    const next = await run({ mode: 'echo', n: 2 });
    expect((await waitState(next, 'COMPLETED', 'FAILED')).status).toBe('COMPLETED');
    expect(rl.workers()[0]!.restarts).toBe(restarts + 1);
    const after = await client.status(id);
    expect(after.status).toBe('CANCELLED');
    expect(after.error).toBeUndefined();
    workerPid();
  });

  it('retries a job whose worker is killed with SIGKILL under its id, on a restarted worker (the service’s automatic retries)', async () => {
    const id = await run({ mode: 'sleep', seconds: 3 });
    await waitState(id, 'IN_PROGRESS');
    const pid = workerPid();
    process.kill(pid, 'SIGKILL');
    // the SDK's heartbeat process (same process group) does not outlive the worker
    await waitUntil(() => !groupAlive(pid), 5_000, 'the killed worker’s process group to be gone');
    const s = await waitState(id, 'FAILED', 'COMPLETED');
    expect(s.status).toBe('COMPLETED');
    expect(workerPid()).not.toBe(pid);
    const entry = rl.ledger().find((e) => e.id === id)!;
    expect(entry.attempts.map((a) => a.outcome)).toEqual(['requeued: worker w-1 exited with signal SIGKILL while running this job', 'COMPLETED']);
    expect((await client.health()).jobs.retried).toBeGreaterThanOrEqual(1);
  });

  it('rejects requests without the API key (401)', async () => {
    const noKey = await fetch(`${rl.url}/local/health`);
    expect(noKey.status).toBe(401);
    const runNoKey = await fetch(`${rl.url}/local/run`, { method: 'POST', body: JSON.stringify({ input: {} }) });
    expect(runNoKey.status).toBe(401);
    expect((await fetch(`${rl.url.replace(/\/v2$/, '')}/admin/ledger`)).status).toBe(401);

    const wrong = new RunpodClient({ baseUrl: rl.url, apiKey: 'wrong-key-123', endpointId: 'local' });
    const err = await wrong.run({ mode: 'echo', url: PRESIGNED }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RunpodHttpError);
    expect((err as RunpodHttpError).status).toBe(401);
    expect((err as Error).message).not.toContain('wrong-key-123');
    expect((err as Error).message).not.toContain('deadbeefsecret');
  });

  it('rejects a /run body over 10 MB (413) and one without input (400)', async () => {
    const err = await client.run({ blob: 'x'.repeat(11 * 1024 * 1024) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RunpodHttpError);
    expect((err as RunpodHttpError).status).toBe(413);
    expect((err as Error).message).toMatch(/too large/i);
    expect((err as Error).message).not.toContain('xxxxxxxx');

    const noInput = await fetch(`${rl.url}/local/run`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ webhook: 'http://127.0.0.1:1/' }),
    });
    expect(noInput.status).toBe(400);
  });

  it('answers 404 for unknown job ids and unknown endpoints', async () => {
    const err = await client.status('no-such-job').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RunpodJobNotFound);
    expect((err as RunpodJobNotFound).status).toBe(404);
    const cancelErr = await client.cancel('no-such-job').catch((e: unknown) => e);
    expect((cancelErr as RunpodHttpError).status).toBe(404);
    const other = new RunpodClient({ baseUrl: rl.url, apiKey: API_KEY, endpointId: 'other' });
    expect(((await other.health().catch((e: unknown) => e)) as RunpodHttpError).status).toBe(404);
  });

  it('reports health with the service’s documented fields only', async () => {
    const res = await fetch(`${rl.url}/local/health`, { headers: { authorization: `Bearer ${API_KEY}` } });
    const h = (await res.json()) as { jobs: Record<string, number>; workers: Record<string, number> };
    expect(Object.keys(h).sort()).toEqual(['jobs', 'workers']);
    expect(Object.keys(h.jobs).sort()).toEqual(['completed', 'failed', 'inProgress', 'inQueue', 'retried']);
    expect(Object.keys(h.workers).sort()).toEqual(['idle', 'running']);
    expect(h.jobs.completed).toBeGreaterThanOrEqual(5);
    expect(h.jobs.failed).toBeGreaterThanOrEqual(3);
    expect(h.jobs.inQueue).toBe(0);
    expect(h.workers.idle! + h.workers.running!).toBe(1);
  });


  it('keeps exactly one ledger entry per submitted job and never an input', async () => {
    const res = await fetch(`${rl.url.replace(/\/v2$/, '')}/admin/ledger`, { headers: { authorization: `Bearer ${API_KEY}` } });
    expect(res.status).toBe(200);
    const ledger = (await res.json()) as Array<Record<string, unknown>>;
    expect(ledger).toEqual(rl.ledger());
    expect(ledger.map((e) => e.id).sort()).toEqual([...submitted].sort());
    expect(ledger.find((e) => e.task === 'echo')).toMatchObject({ status: 'COMPLETED', workerId: 'w-1', endpointId: 'local' });
    for (const e of ledger) expect(Object.keys(e).sort()).not.toContain('input');
    expect(JSON.stringify(ledger)).not.toContain('deadbeefsecret');
  });

  it('never logs presigned-URL signatures or the API key', () => {
    const all = logLines.join('');
    expect(all).toContain('job COMPLETED');
    expect(all).toContain('"worker":"w-1"'); // worker output is piped to the logger
    expect(all).not.toContain('deadbeefsecret');
    expect(all).not.toContain(API_KEY);
  });

  it('stops every worker process', async () => {
    const pids = [...seenPids, workerPid()];
    await rl.stop();
    for (const pid of pids) expect(groupAlive(pid)).toBe(false);
  });
});

describe('runpod-local endpoint details', () => {
  it('authenticates worker calls by the Authorization header the SDK sends, like the service', async () => {
    const out = path.join(mkdtempSync(path.join(os.tmpdir(), 'rl-auth-')), 'codes');
    const local = await startRunpodLocal({ port: 0, apiKey: API_KEY, workerCommand: [PYTHON, AUTH_PROBE], workerEnv: { AUTH_PROBE_OUT: out }, workers: 1, logger });
    try {
      const codes = await until(() => (existsSync(out) ? readFileSync(out, 'utf8') : ''), (t) => t.length > 0, 20_000);
      expect(codes).toBe('401 200'); // its own token without the key is refused
    } finally {
      await local.stop();
    }
  });

  it("answers the REST API's endpoint and worker views: max workers, and each worker's status", async () => {
    const local = await startRunpodLocal({ port: 0, apiKey: API_KEY, workerCommand: [], workers: 0, logger });
    try {
      const rest = (p: string, key = API_KEY) => fetch(`${local.url.replace(/\/v2$/, '')}/rest/v2/serverless/local${p}`, { headers: { authorization: `Bearer ${key}` } });
      expect(await (await rest('')).json()).toMatchObject({ id: 'local', workers: { min: 0, max: 0 } });
      expect(await (await rest('/workers')).json()).toEqual({ summary: { running: 0, idle: 0, initializing: 0, throttled: 0, unhealthy: 0, total: 0 }, workers: [] });
      expect((await rest('', 'wrong')).status).toBe(401);
    } finally {
      await local.stop();
    }
  });

  it('removes a job whose TTL ran out: /status answers 404, as on the service', async () => {
    const local = await startRunpodLocal({ port: 0, apiKey: API_KEY, workerCommand: [], workers: 0, logger });
    try {
      const c = new RunpodClient({ baseUrl: local.url, apiKey: API_KEY, endpointId: 'local' });
      const { id } = await c.run({ task: 'never-runs' }, { policy: { ttl: 300 } });
      await sleep(500);
      await expect(c.status(id)).rejects.toBeInstanceOf(RunpodJobNotFound);
      expect(local.ledger()).toMatchObject([{ id, status: 'TIMED_OUT', expiredAt: expect.any(String) }]);
    } finally {
      await local.stop();
    }
  });

  it('purges finished results after resultTtlMs and reports a taken port clearly', async () => {
    const local = await startRunpodLocal({ port: 0, apiKey: API_KEY, workerCommand: [], workers: 0, resultTtlMs: 300, logger });
    try {
      const c = new RunpodClient({ baseUrl: local.url, apiKey: API_KEY, endpointId: 'local' });
      const { id } = await c.run({ task: 'never-runs' });
      expect((await c.status(id)).status).toBe('IN_QUEUE');
      expect(await c.cancel(id)).toEqual({ id, status: 'CANCELLED' });
      expect((await c.status(id)).status).toBe('CANCELLED');
      await sleep(400);
      await expect(c.status(id)).rejects.toBeInstanceOf(RunpodJobNotFound);
      expect(local.ledger()).toMatchObject([{ id, task: 'never-runs', status: 'CANCELLED', progressUpdates: 0 }]);

      await expect(
        startRunpodLocal({ port: local.port, apiKey: API_KEY, workerCommand: [], workers: 0, logger }),
      ).rejects.toThrow(`port ${local.port} is in use`);
    } finally {
      await local.stop();
    }
  });

  it('reports a port held by another program', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    try {
      await expect(startRunpodLocal({ port, apiKey: API_KEY, workerCommand: [], workers: 0, logger })).rejects.toThrow(
        `port ${port} is in use`,
      );
    } finally {
      blocker.close();
    }
  });
});

describe('runpod-local CLI', () => {
  it('serves jobs, and its workers die with it even when it is killed with SIGKILL', async () => {
    const cli = spawn(process.execPath, ['--import', 'tsx', CLI, '--port', '0', '--api-key', API_KEY, '--', PYTHON, HANDLER], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LOG_LEVEL: 'info' },
    });
    const workerPids: number[] = [];
    createInterface({ input: cli.stderr }).on('line', (line) => {
      try {
        const rec = JSON.parse(line) as { msg?: string; workerPid?: number };
        if (rec.msg === 'worker w-1 started' && rec.workerPid) workerPids.push(rec.workerPid);
      } catch {
        /* not a log line */
      }
    });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        createInterface({ input: cli.stdout }).once('line', resolve);
        cli.once('exit', (code) => reject(new Error(`runpod-local CLI exited early with code ${code}`)));
      });
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v2$/);
      const c = new RunpodClient({ baseUrl: url, apiKey: API_KEY, endpointId: 'local' });
      const { id } = await c.run({ mode: 'echo', via: 'cli' });
      const deadline = Date.now() + 20_000;
      let s = await c.status(id);
      while (s.status !== 'COMPLETED' && Date.now() < deadline) {
        await sleep(100);
        s = await c.status(id);
      }
      expect(s.output).toMatchObject({ echo: { via: 'cli' } });
      expect(workerPids).toHaveLength(1);
      expect(groupAlive(workerPids[0]!)).toBe(true);

      cli.kill('SIGKILL'); // no stop(): the worker's watchdog must take its process group down
      await waitUntil(() => !groupAlive(workerPids[0]!), 5_000, 'the orphaned worker group to die');
    } finally {
      cli.kill('SIGKILL');
      for (const pid of workerPids) if (groupAlive(pid)) process.kill(-pid, 'SIGKILL');
    }
  });
});
