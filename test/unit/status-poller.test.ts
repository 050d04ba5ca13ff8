// The shared status poller (lib/status-poller.ts) against an in-memory endpoint that counts what
// it is asked: many waiters stay within the share of the limits, every job gets asked in turn,
// waiters wake on a change (not on the ticking clock), long-polls go to the first jobs, a gone
// job rejects, and a 429 pauses the poller instead of starting a storm.
import { describe, expect, it } from 'vitest';
import { RunpodHttpError, RunpodJobNotFound, type RunpodJobStatus } from '../../lib/runpod-client.js';
import { budgetOf, StatusPoller, type StatusSource } from '../../lib/status-poller.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An endpoint in memory: jobs by id, long-polls held until final, counts of what it was asked. */
function fakeEndpoint(latencyMs = 2) {
  const jobs = new Map<string, RunpodJobStatus>();
  const held = new Map<string, Set<() => void>>();
  const counts = { requests: 0, longPolls: 0, inFlight: 0, maxInFlight: 0, perSecond: new Map<number, number>(), asked: new Map<string, number>(), throttleNext: 0, throttled: 0 };
  const answer = async <T>(id: string, wait: () => Promise<void>): Promise<T> => {
    counts.requests++;
    counts.asked.set(id, (counts.asked.get(id) ?? 0) + 1);
    const sec = Math.floor(Date.now() / 1000);
    counts.perSecond.set(sec, (counts.perSecond.get(sec) ?? 0) + 1);
    counts.inFlight++;
    counts.maxInFlight = Math.max(counts.maxInFlight, counts.inFlight);
    try {
      if (counts.throttleNext > 0) {
        counts.throttleNext--;
        counts.throttled++;
        throw new RunpodHttpError('HTTP 429', 429, 'status');
      }
      await sleep(latencyMs);
      await wait();
      const job = jobs.get(id);
      if (!job) throw new RunpodJobNotFound(id, 'HTTP 404');
      return { ...job } as T;
    } finally {
      counts.inFlight--;
    }
  };
  const source: StatusSource = {
    status: (id) => answer(id, async () => {}),
    waitForStatus: (id, ms) => {
      counts.longPolls++;
      return answer(id, () =>
        new Promise<void>((resolve) => {
          if (['COMPLETED', 'FAILED', 'CANCELLED'].includes(jobs.get(id)?.status ?? '')) return resolve();
          const done = () => (clearTimeout(t), resolve());
          const t = setTimeout(() => (held.get(id)?.delete(done), resolve()), ms);
          held.set(id, (held.get(id) ?? new Set()).add(done));
        }),
      );
    },
  };
  const set = (id: string, status: string, output?: unknown) => {
    jobs.set(id, { id, status, output, delayTime: undefined, executionTime: 5, error: undefined, workerId: undefined });
    if (['COMPLETED', 'FAILED', 'CANCELLED'].includes(status)) for (const wake of held.get(id) ?? []) wake();
  };
  return { source, counts, set, jobs };
}

describe('StatusPoller', () => {
  it('keeps many waiting jobs within its share of the limits, asks each in turn, and wakes each waiter when its job ends', async () => {
    const ep = fakeEndpoint();
    const opts = { share: 0.1, longPollMs: 4_000, minIntervalMs: 200 }; // 18/s, 40 at once, 32 long-polls
    const budget = budgetOf(opts);
    expect(budget).toMatchObject({ perSecond: 18, burst: 1, concurrent: 40, longPolls: 32 });
    expect(budgetOf({ ...opts, share: 1 })).toMatchObject({ perSecond: 181, burst: 18, concurrent: 400, longPolls: 320 });
    const poller = new StatusPoller(ep.source, opts);
    const ids = Array.from({ length: 60 }, (_, i) => `job-${i}`);
    for (const id of ids) ep.set(id, 'IN_PROGRESS');
    // Each waiter loops like waitUntilFinished: watch, note what it saw, watch again.
    const noticed = new Map<string, number>();
    const waiters = ids.map(async (id) => {
      let seen: RunpodJobStatus | undefined;
      for (;;) {
        const s = await poller.watch(id, seen, { maxWaitMs: 1_000 });
        if (s) seen = s;
        if (s?.status === 'COMPLETED') return noticed.set(id, Date.now());
      }
    });
    await sleep(3_000);
    // The last ten jobs finish now: long-polled or not, their waiters hear of it.
    const finishedAt = Date.now();
    for (const id of ids.slice(-10)) ep.set(id, 'COMPLETED', { ok: true });
    await sleep(4_500);
    for (const id of ids.slice(-10)) expect(noticed.get(id), id).toBeGreaterThanOrEqual(finishedAt);
    expect(Math.max(...ids.slice(-10).map((id) => noticed.get(id)! - finishedAt))).toBeLessThan(4_000);
    expect(ep.counts.maxInFlight).toBeLessThanOrEqual(budget.concurrent);
    const seconds = [...ep.counts.perSecond.values()];
    expect(Math.max(...seconds)).toBeLessThanOrEqual(budget.perSecond + budget.burst);
    // Fair: every job was asked, the long-polled ones first.
    expect(ids.every((id) => (ep.counts.asked.get(id) ?? 0) >= 1)).toBe(true);
    expect(ep.counts.longPolls).toBeGreaterThanOrEqual(budget.longPolls);
    for (const id of ids.slice(0, -10)) ep.set(id, 'COMPLETED');
    await Promise.all(waiters);
  }, 30_000);

  it('wakes a waiter on a new state or new progress, not on an unchanged status, and rejects when the job is gone', async () => {
    const ep = fakeEndpoint();
    const poller = new StatusPoller(ep.source, { share: 0.1, longPollMs: 0, minIntervalMs: 50 });
    ep.set('a', 'IN_QUEUE');
    const first = await poller.watch('a', undefined, { maxWaitMs: 1_000 });
    expect(first?.status).toBe('IN_QUEUE');
    // Unchanged: the waiter is answered only at the end of its wait, with what is known.
    const t0 = Date.now();
    expect((await poller.watch('a', first, { maxWaitMs: 400 }))?.status).toBe('IN_QUEUE');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(380);
    const progressed = poller.watch('a', first, { maxWaitMs: 5_000 });
    await sleep(100);
    ep.set('a', 'IN_PROGRESS', { step: 3 });
    expect(await progressed).toMatchObject({ status: 'IN_PROGRESS', output: { step: 3 } });
    const gone = poller.watch('a', await progressed, { maxWaitMs: 5_000 });
    ep.jobs.delete('a');
    await expect(gone).rejects.toBeInstanceOf(RunpodJobNotFound);
  });

  it('pauses after a 429 instead of asking again at once', async () => {
    const ep = fakeEndpoint();
    const poller = new StatusPoller(ep.source, { share: 0.5, longPollMs: 0, minIntervalMs: 20 });
    ep.set('a', 'IN_PROGRESS');
    ep.counts.throttleNext = 3;
    const t0 = Date.now();
    const s = await poller.watch('a', undefined, { maxWaitMs: 10_000 });
    expect(s?.status).toBe('IN_PROGRESS');
    expect(ep.counts.throttled).toBe(3);
    // Backoff 500 + 1000 + 2000 ms before the fourth request.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(3_000);
    expect(poller.stats()).toMatchObject({ throttled: 3, sent: 4 });
  }, 15_000);
});
