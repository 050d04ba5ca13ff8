// runpod-local's endpoint behaviour with the unmodified runpod SDK worker: scale to zero and back,
// per-worker concurrency, low-priority jobs, the requeue of a dead worker's job, injected worker
// crashes and slow cold starts, the endpoint execution timeout, and health telling a crash loop
// from jobs waiting for capacity. Each test starts its own endpoint.
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { RunpodClient, type RunpodJobStatus } from '../lib/runpod-client.js';
import { startRunpodLocal, type RunpodLocal, type RunpodLocalOptions } from '../runpod-local/index.js';
import { groupAlive, until } from '../testkit/wait.js';

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const PYTHON = process.env.LORAFLOW_PYTHON ?? fileURLToPath(new URL('../.tools/pyenv/bin/python', import.meta.url));
const API_KEY = 'rl-scaling-key-4c2e';
const logger = pino({ level: process.env.RUNPOD_LOCAL_TEST_LOGS ? 'info' : 'silent' });
const final = (s: RunpodJobStatus) => ['COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT'].includes(s.status);

async function withEndpoint(
  options: Partial<RunpodLocalOptions>,
  body: (rl: RunpodLocal, c: RunpodClient) => Promise<void>,
): Promise<void> {
  const rl = await startRunpodLocal({
    port: 0,
    apiKey: API_KEY,
    workerCommand: [PYTHON, fixture('sdk_handler.py')],
    stopGraceMs: 3_000,
    cancelGraceMs: 2_000,
    // These tests read runpod-local's own health extras (the service answers only idle/running).
    healthDiagnosis: true,
    logger,
    ...options,
  });
  try {
    await body(rl, new RunpodClient({ baseUrl: rl.url, apiKey: API_KEY, endpointId: rl.endpointId }));
  } finally {
    await rl.stop();
  }
}



describe('runpod-local endpoint behaviour', () => {
  it('scales from zero on demand, records cold starts, and back to zero when idle', async () => {
    await withEndpoint({ minWorkers: 0, maxWorkers: 2, idleTimeoutMs: 1_000 }, async (rl, c) => {
      expect(rl.workers()).toEqual([]);
      expect((await c.health()).workers).toMatchObject({ idle: 0, running: 0, initializing: 0 });
      const ids = [(await c.run({ mode: 'asleep', seconds: 1.5 })).id, (await c.run({ mode: 'asleep', seconds: 1.5 })).id];
      expect((await c.health()).diagnosis?.queue).toBe('cold-starting');
      const done = await Promise.all(ids.map((id) => until(() => c.status(id), final)));
      expect(done.map((s) => s.status)).toEqual(['COMPLETED', 'COMPLETED']);
      const ledger = rl.ledger();
      // Two workers started for two queued jobs, each job waited for one worker's cold start.
      expect(new Set(ledger.map((e) => e.workerId))).toEqual(new Set(['w-1', 'w-2']));
      for (const e of ledger) expect(e.attempts[0]!.coldStartMs).toBeGreaterThan(0);
      const pids = rl.workers().map((w) => w.pid!);
      expect(pids).toHaveLength(2);

      await until(() => rl.workers(), (w) => w.length === 0, 10_000);
      for (const pid of pids) await until(() => groupAlive(pid), (alive) => !alive, 5_000);
      expect((await c.health()).workers).toMatchObject({ idle: 0, running: 0 });

      const again = await c.run({ mode: 'echo', n: 1 });
      expect((await until(() => c.status(again.id), final)).status).toBe('COMPLETED');
      expect(rl.ledger().find((e) => e.id === again.id)!.attempts[0]!.coldStartMs).toBeGreaterThan(0);
      expect(rl.ledger().find((e) => e.id === again.id)!.workerId).toBe('w-3');
    });
  }, 60_000);

  it('gives one worker up to `concurrency` jobs (job-take-batch), queues the rest, and serves low priority last', async () => {
    await withEndpoint(
      { workers: 1, concurrency: 2, workerCommand: [PYTHON, fixture('sdk_concurrent_handler.py')], workerEnv: { HANDLER_CONCURRENCY: '2' } },
      async (rl, c) => {
        await until(() => rl.workers()[0]!.ready, (r) => r);
        const a = await c.run({ mode: 'asleep', seconds: 1.5 });
        const b = await c.run({ mode: 'asleep', seconds: 1.5 });
        await until(() => c.status(b.id), (s) => s.status === 'IN_PROGRESS');
        const low = await c.run({ mode: 'echo', which: 'low' }, { policy: { lowPriority: true } });
        const normal = await c.run({ mode: 'echo', which: 'normal' });
        const h = await c.health();
        expect(h.jobs).toMatchObject({ inProgress: 2, inQueue: 2 });
        expect(h.diagnosis?.queue).toBe('waiting-for-capacity');
        expect(rl.workers()[0]!.jobs!.sort()).toEqual([a.id, b.id].sort());

        for (const id of [a.id, b.id, low.id, normal.id]) expect((await until(() => c.status(id), final)).status).toBe('COMPLETED');
        const byId = new Map(rl.ledger().map((e) => [e.id, e]));
        const taken = (id: string) => Date.parse(byId.get(id)!.takenAt!);
        expect(taken(normal.id)).toBeLessThanOrEqual(taken(low.id)); // submitted later, served first
        expect(byId.get(low.id)!.lowPriority).toBe(true);
      },
    );
  }, 60_000);

  it('declares dead a worker that stops sending heartbeats and requeues its job on a fresh worker', async () => {
    await withEndpoint({ workers: 1, jobRetries: 1, pingIntervalMs: 1_000, heartbeatTimeoutMs: 2_500 }, async (rl, c) => {
      const { id } = await c.run({ mode: 'asleep', seconds: 3, task: 'frozen' });
      await until(() => c.status(id), (s) => s.status === 'IN_PROGRESS');
      const pid = rl.workers()[0]!.pid!;
      await until(() => rl.workers()[0]!.heartbeat, (hb) => hb?.jobs.includes(id) === true, 5_000); // pings carry the job
      process.kill(-pid, 'SIGSTOP'); // the whole worker (and its ping process) freezes

      const requeued = await until(() => rl.ledger().find((e) => e.id === id)!, (e) => e.attempts.length === 2, 15_000);
      expect(requeued.attempts[0]).toMatchObject({ workerId: 'w-1', outcome: expect.stringMatching(/^requeued: worker w-1 stopped sending heartbeats/) });
      await until(() => groupAlive(pid), (alive) => !alive, 5_000);
      const s = await until(() => c.status(id), final, 20_000);
      expect(s.status).toBe('COMPLETED');
      const entry = rl.ledger().find((e) => e.id === id)!;
      expect(entry.retries).toBe(1);
      expect(entry.attempts.map((a) => a.outcome)).toEqual([expect.stringMatching(/^requeued/), 'COMPLETED']);
      expect((await c.health()).jobs.retried).toBe(1);
      expect(rl.ledger().filter((e) => e.task === 'frozen')).toHaveLength(1); // one job, two attempts
    });
  }, 60_000);

  it('injected crashes: at take (no retries: FAILED), at result (retried once: COMPLETED, result of the first attempt lost)', async () => {
    await withEndpoint({ workers: 1, jobRetries: 0, faults: { workerCrash: { at: 'take', task: 'doomed' } } }, async (rl, c) => {
      const { id } = await c.run({ mode: 'echo', task: 'doomed' });
      const s = await until(() => c.status(id), final);
      expect(s).toMatchObject({ status: 'FAILED', error: 'worker w-1 exited with signal SIGKILL while running this job' });
      const other = await c.run({ mode: 'echo', task: 'fine' });
      expect((await until(() => c.status(other.id), final)).status).toBe('COMPLETED');
    });
    await withEndpoint({ workers: 1, jobRetries: 1, faults: { workerCrash: { at: 'result' } } }, async (rl, c) => {
      const { id } = await c.run({ mode: 'progress', steps: 2, sleep: 0.2, task: 'train' });
      const s = await until(() => c.status(id), final, 30_000);
      expect(s).toMatchObject({ status: 'COMPLETED', output: { steps: 2 } });
      const entry = rl.ledger().find((e) => e.id === id)!;
      expect(entry.attempts).toHaveLength(2);
      expect(entry.attempts[0]!.outcome).toMatch(/^requeued: worker w-1 exited with signal SIGKILL/);
      expect(rl.ledger().filter((e) => e.task === 'train')).toHaveLength(1);
      expect(rl.workers()[0]!.restarts).toBe(1);
    });
  }, 60_000);

  it('kills a job at the endpoint execution timeout (TIMED_OUT) and records slow injected cold starts', async () => {
    await withEndpoint(
      { minWorkers: 0, maxWorkers: 1, executionTimeoutMs: 1_500, faults: { coldStartDelayMs: 1_500 } },
      async (rl, c) => {
        const { id } = await c.run({ mode: 'asleep', seconds: 30 });
        const s = await until(() => c.status(id), final, 20_000);
        expect(s.status).toBe('TIMED_OUT');
        expect(s.error).toMatch(/execution timeout exceeded \(1500 ms\)/);
        expect(s.executionTime!).toBeGreaterThanOrEqual(1_500);
        expect(s.delayTime!).toBeGreaterThanOrEqual(1_500); // waited for the slow cold start
        expect(rl.ledger()[0]!.attempts[0]!.coldStartMs).toBeGreaterThanOrEqual(1_500);
      },
    );
  }, 60_000);

  it('health tells workers that keep crashing from jobs waiting for capacity; the cold-start limit kills a worker that never starts', async () => {
    await withEndpoint({ workers: 1, workerCommand: [PYTHON, '-c', 'import sys; sys.exit(3)'] }, async (rl, c) => {
      await c.run({ mode: 'echo' });
      const h = await until(() => c.health(), (x) => x.workers.unhealthy === 1, 15_000);
      expect(h.diagnosis?.queue).toBe('workers-crashing');
      expect(h.jobs.inQueue).toBe(1);
      expect(h.diagnosis?.lastWorkerFailure).toBe('worker w-1 exited with code 3');
      expect(rl.workers()[0]!.crashLooping).toBe(true);
    });
    await withEndpoint({ workers: 1, workerCommand: ['sleep', '60'], coldStartTimeoutMs: 1_000 }, async (rl, c) => {
      await c.run({ mode: 'echo' });
      const h = await until(() => c.health(), (x) => /cold-start limit/.test(x.diagnosis?.lastWorkerFailure ?? ''), 10_000);
      expect(h.diagnosis?.lastWorkerFailure).toBe('worker w-1 did not start within the cold-start limit (1000 ms)');
      expect(h.jobs.inQueue).toBe(1);
    });
  }, 60_000);
});
