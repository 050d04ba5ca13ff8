// The shared status poller (lib/status-poller.ts) against an in-memory endpoint that counts what
// it is asked: many waiters stay within the share of the limits, every job gets asked in turn,
// waiters wake on a change (not on the ticking clock), long-polls go to the jobs expected to finish
// soonest (else the first jobs) while the others are still asked in turn, a job said to be final
// is asked next, a gone job rejects, and a 429 pauses the poller instead of starting a storm.
import { describe, expect, it } from 'vitest';
import { RunpodHttpError, RunpodJobNotFound, type RunpodJobStatus } from '../../lib/runpod-client.js';
import { MinHeap } from '../../lib/min-heap.js';
import { budgetOf, expectedFinish, StatusPoller, type StatusSource } from '../../lib/status-poller.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An endpoint in memory: jobs by id (an output may be a function, read at each answer), long-polls
 * held until final, counts of what it was asked. */
function fakeEndpoint(latencyMs = 2) {
  const jobs = new Map<string, RunpodJobStatus>();
  const held = new Map<string, Set<() => void>>();
  const counts = { requests: 0, longPolls: 0, inFlight: 0, maxInFlight: 0, perSecond: new Map<number, number>(), asked: new Map<string, number>(), askedAt: new Map<string, number[]>(), holding: new Map<string, number>(), throttleNext: 0, throttled: 0 };
  const answer = async <T>(id: string, wait: () => Promise<void>): Promise<T> => {
    counts.requests++;
    counts.asked.set(id, (counts.asked.get(id) ?? 0) + 1);
    counts.askedAt.set(id, [...(counts.askedAt.get(id) ?? []), Date.now()]);
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
      return { ...job, output: typeof job.output === 'function' ? (job.output as () => unknown)() : job.output } as T;
    } finally {
      counts.inFlight--;
    }
  };
  const source: StatusSource = {
    status: (id) => answer(id, async () => {}),
    waitForStatus: (id, ms) => {
      counts.longPolls++;
      counts.holding.set(id, (counts.holding.get(id) ?? 0) + 1);
      const released = () => counts.holding.set(id, counts.holding.get(id)! - 1);
      return answer<RunpodJobStatus>(id, () =>
        new Promise<void>((resolve) => {
          if (['COMPLETED', 'FAILED', 'CANCELLED'].includes(jobs.get(id)?.status ?? '')) return resolve();
          const done = () => (clearTimeout(t), resolve());
          const t = setTimeout(() => (held.get(id)?.delete(done), resolve()), ms);
          held.set(id, (held.get(id) ?? new Set()).add(done));
        }),
      ).finally(released);
    },
  };
  const set = (id: string, status: string, output?: unknown) => {
    jobs.set(id, { id, status, output, delayTime: undefined, executionTime: 5, error: undefined, workerId: undefined });
    if (['COMPLETED', 'FAILED', 'CANCELLED'].includes(status)) for (const wake of held.get(id) ?? []) wake();
  };
  return { source, counts, set, jobs };
}

/** Each waiter loops like waitUntilFinished: watch, note what it saw, watch again; `noticed` is when it saw COMPLETED. */
function waitAll(poller: StatusPoller, ids: string[], maxWaitMs: number) {
  const noticed = new Map<string, number>();
  const waiters = ids.map(async (id) => {
    let seen: RunpodJobStatus | undefined;
    for (;;) {
      const s = await poller.watch(id, seen, { maxWaitMs });
      if (s) seen = s;
      if (s?.status === 'COMPLETED') return noticed.set(id, Date.now());
    }
  });
  return { noticed, waiters };
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
    const { noticed, waiters } = waitAll(poller, ids, 1_000);
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

  it('ranks a job by the ETA its training reports: read time + etaSeconds, now past training, none without one', () => {
    const at = 1_000_000;
    const running = (output: unknown) => ({ id: 'a', status: 'IN_PROGRESS', output }) as RunpodJobStatus;
    expect(expectedFinish(running({ phase: 'training', step: 10, totalSteps: 100, itPerSec: 2, etaSeconds: 45 }), at)).toBe(at + 45_000);
    expect(expectedFinish(running({ phase: 'upload' }), at)).toBe(at);
    expect(expectedFinish(running({ phase: 'generating', step: 1 }), at)).toBe(at);
    for (const output of [{ phase: 'captioning' }, { phase: 'training', etaSeconds: Number.NaN }, { phase: 'training', etaSeconds: -1 }, 'text', null, undefined]) {
      expect(expectedFinish(running(output), at), JSON.stringify(output)).toBeUndefined();
    }
    expect(expectedFinish({ id: 'a', status: 'IN_QUEUE' } as RunpodJobStatus, at)).toBeUndefined();
    expect(expectedFinish({ id: 'a', status: 'COMPLETED', output: { etaSeconds: 5 } } as RunpodJobStatus, at)).toBeUndefined();
    expect(expectedFinish(undefined, at)).toBeUndefined();
    // The heap it ranks with pops in key order.
    const heap = new MinHeap<number>();
    const keys = Array.from({ length: 200 }, (_, i) => (i * 7919) % 1009);
    for (const k of keys) heap.push(k, k);
    const popped = keys.map(() => heap.pop()!.key);
    expect(popped).toEqual([...keys].sort((a, b) => a - b));
    expect(heap.pop()).toBeUndefined();
  });

  it('gives its long-polls to the jobs expected to finish soonest, and still asks every other job in turn', async () => {
    const ep = fakeEndpoint();
    const opts = { share: 0.05, longPollMs: 5_000, minIntervalMs: 200 }; // 9/s, 20 at once, 16 long-polls
    expect(budgetOf(opts)).toMatchObject({ perSecond: 9, concurrent: 20, longPolls: 16 });
    const poller = new StatusPoller(ep.source, opts);
    const t0 = Date.now();
    // 24 trainings ending 20..43 s from now, listed farthest first (first-come would pick the wrong
    // ones); 8 ending in an hour; 8 queued with no estimate.
    const near = Array.from({ length: 24 }, (_, i) => `near-${23 - i}`);
    const far = Array.from({ length: 8 }, (_, i) => `far-${i}`);
    const queued = Array.from({ length: 8 }, (_, i) => `queued-${i}`);
    const training = (endsAt: number) => () => ({ phase: 'training', etaSeconds: Math.max(0, (endsAt - Date.now()) / 1000) });
    for (const id of near) ep.set(id, 'IN_PROGRESS', training(t0 + 20_000 + Number(id.split('-')[1]) * 1_000));
    for (const id of far) ep.set(id, 'IN_PROGRESS', training(t0 + 3_600_000));
    for (const id of queued) ep.set(id, 'IN_QUEUE');
    const ids = [...near, ...far, ...queued];
    const { noticed, waiters } = waitAll(poller, ids, 2_000);
    // Every job asked once (40 at 9/s), and the long-polls the first-read jobs took have ended (a
    // held long-poll is not taken back).
    await sleep(5_000 + opts.longPollMs);
    // From then on the long-polls are held by the 16 nearest, whenever one looks (one may be between
    // two long-polls, waiting for a token).
    const nearest = Array.from({ length: 16 }, (_, i) => `near-${i}`);
    for (let i = 0; i < 8; i++, await sleep(1_000)) {
      const holding = [...ep.counts.holding].filter(([, n]) => n > 0).map(([id]) => id);
      expect(holding.filter((id) => !nearest.includes(id))).toEqual([]);
      expect(holding.length).toBeGreaterThanOrEqual(14);
    }
    // The others are still asked in turn (none waits more than a bounded time between two questions).
    // (In turn, about every 4 s here: 24 jobs share what 9/s leaves after the long-polls' 3/s.)
    const from = Date.now() - 8_000;
    for (const id of [...far, ...queued, 'near-23']) {
      const times = [from, ...ep.counts.askedAt.get(id)!.filter((t) => t >= from), Date.now()];
      const gaps = times.slice(1).map((t, i) => t - times[i]!);
      expect(Math.max(...gaps), id).toBeLessThan(7_000);
    }
    // The nearest job ends: its held long-poll answers at once.
    const endedAt = Date.now();
    ep.set('near-0', 'COMPLETED', { ok: true });
    await sleep(300);
    expect(noticed.get('near-0')! - endedAt).toBeLessThan(200);
    for (const id of ids) ep.set(id, 'COMPLETED');
    await Promise.all(waiters);
  }, 30_000);

  it('ranks a job anew when its ETA moves earlier (a training that sped up), not at the estimate it first gave', async () => {
    const ep = fakeEndpoint();
    const opts = { share: 0.05, longPollMs: 5_000, minIntervalMs: 200 }; // 9/s, 20 at once, 16 long-polls
    const poller = new StatusPoller(ep.source, opts);
    const training = (endsAt: number) => () => ({ phase: 'training', etaSeconds: Math.max(0, (endsAt - Date.now()) / 1000) });
    // 60 trainings an hour from their end: long-polls go to whichever comes in turn.
    const ids = Array.from({ length: 60 }, (_, i) => `job-${i}`);
    for (const id of ids) ep.set(id, 'IN_PROGRESS', training(Date.now() + 3_600_000));
    const { noticed, waiters } = waitAll(poller, ids, 2_000);
    await sleep(10_000); // every job read, its hour-long estimate known
    ep.set('job-30', 'IN_PROGRESS', training(Date.now() + 30_000));
    await sleep(10_000); // read again in turn (or at the end of a long-poll) with the new estimate
    let held = 0;
    for (let i = 0; i < 5; i++, await sleep(1_000)) if ((ep.counts.holding.get('job-30') ?? 0) > 0) held++;
    expect(held).toBeGreaterThanOrEqual(4);
    const endedAt = Date.now();
    ep.set('job-30', 'COMPLETED', { ok: true });
    await sleep(300);
    expect(noticed.get('job-30')! - endedAt).toBeLessThan(200);
    for (const id of ids) ep.set(id, 'COMPLETED');
    await Promise.all(waiters);
  }, 40_000);

  it('asks a job said to be final (a completion webhook) ahead of its turn, within the budget', async () => {
    const ep = fakeEndpoint();
    // Plain polls only, and none of a job again for a minute: only a nudge brings its end in sooner.
    const opts = { share: 0.75, longPollMs: 0, minIntervalMs: 60_000 }; // 136/s, burst 13
    const budget = budgetOf(opts);
    const poller = new StatusPoller(ep.source, opts);
    const ids = Array.from({ length: 200 }, (_, i) => `job-${i}`);
    for (const id of ids) ep.set(id, 'IN_PROGRESS');
    const { noticed, waiters } = waitAll(poller, ids, 5_000);
    await sleep(2_500); // every job asked once
    expect(ids.every((id) => ep.counts.asked.get(id) === 1)).toBe(true);
    const endedAt = Date.now();
    for (const id of ids.slice(0, 5)) ep.set(id, 'COMPLETED', { ok: true });
    for (const id of ids.slice(0, 3)) expect(poller.nudge(id)).toBe(true);
    expect(poller.nudge('not-watched-here')).toBe(false);
    await sleep(1_000);
    for (const id of ids.slice(0, 3)) expect(noticed.get(id)! - endedAt, id).toBeLessThan(200);
    // Not nudged: still waiting for its turn.
    for (const id of ids.slice(3, 5)) expect(noticed.has(id), id).toBe(false);
    // A burst of nudges is paced like any other request.
    ep.counts.perSecond.clear();
    for (const id of ids) ep.set(id, 'COMPLETED');
    for (const id of ids.slice(3)) poller.nudge(id);
    await Promise.all(waiters);
    expect(Math.max(...ep.counts.perSecond.values())).toBeLessThanOrEqual(budget.perSecond + budget.burst);
    expect(ep.counts.maxInFlight).toBeLessThanOrEqual(budget.concurrent);
  }, 20_000);

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
