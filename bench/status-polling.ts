// Item 3b: the status-polling path alone at N waiting jobs, without Temporal: N jobs queued on a
// runpod-local endpoint with no workers (RunPod's status limits as documented; /run's own limit
// lifted so 10,000 jobs can be queued in seconds), each waited on by a loop shaped like
// waitUntilFinished, either through one shared StatusPoller (what the worker does now) or with a
// long-poll of its own (the baseline, what each stage did before). Chosen jobs are cancelled
// (a final state) during the window: how long until their waiter noticed, runpod-local's counts
// of the status requests against the limits, and this process's RSS per waiting job.
import { RunpodClient, RunpodHttpError, type RunpodJobStatus, isFinalState } from '../lib/runpod-client.js';
import { StatusPoller } from '../lib/status-poller.js';
import { startRunpodLocal } from '../runpod-local/index.js';
import { setMaxListeners } from 'node:events';
import { pino } from 'pino';
import { API_KEY, percentile, pool, procSample, round, sleep } from './lib.js';

const LONG_POLL_MS = 10_000;
const POLL_MS = 1_000;

export async function benchStatusPolling(o: { n: number; windowSeconds: number; finish: number; perStage?: boolean; share?: number; log: (m: string) => void }) {
  const rl = await startRunpodLocal({ port: 0, apiKey: API_KEY, workerCommand: [], workers: 0, rateLimits: { run: 1_000_000_000 }, logger: pino({ level: 'silent' }) });
  try {
    const client = new RunpodClient({ baseUrl: rl.url, apiKey: API_KEY, endpointId: rl.endpointId });
    const ids = await pool(Array.from({ length: o.n }, (_, i) => i), 100, async (i) => (await client.run({ i })).id);
    global.gc?.();
    const rssBefore = procSample(process.pid)?.rss ?? 0;
    const poller = new StatusPoller(client, { share: o.share ?? 0.75, longPollMs: LONG_POLL_MS, minIntervalMs: POLL_MS });
    const stop = new AbortController();
    setMaxListeners(0, stop.signal); // one listener per waiting job (an activity has a signal of its own)
    const noticed = new Map<string, number>();
    let errors = 0;
    // Each waiter: ask, note what it saw, ask again, until its job is final (as waitUntilFinished does).
    const waitOne = async (id: string) => {
      let seen: RunpodJobStatus | undefined;
      while (!stop.signal.aborted) {
        let s: RunpodJobStatus | undefined;
        try {
          s = o.perStage
            ? await client.waitForStatus(id, LONG_POLL_MS)
            : await poller.watch(id, seen, { maxWaitMs: LONG_POLL_MS, signal: stop.signal });
        } catch (err) {
          errors++;
          if (!(err instanceof RunpodHttpError)) throw err;
          if (o.perStage) await sleep(POLL_MS); // the old loop waited out the poll interval after a failed poll
        }
        if (s) seen = s;
        if (s && isFinalState(s.status)) return noticed.set(id, Date.now());
      }
    };
    const waiters = ids.map((id) => waitOne(id).catch(() => {}));
    await sleep(Math.min(20_000, 5_000 + o.n)); // every job asked at least once
    const endpoint = rl.endpoint();
    endpoint.resetLimitStats();
    const rssWaiting = procSample(process.pid)?.rss ?? 0;
    const chosen = Array.from({ length: Math.min(o.finish, o.n) }, (_, i) => ids[Math.floor(((i + 0.5) * o.n) / Math.min(o.finish, o.n))]!);
    const finishedAt = new Map<string, number>();
    const windowStart = Date.now();
    for (const [i, id] of chosen.entries()) {
      await sleep(Math.max(0, windowStart + ((i + 0.5) * o.windowSeconds * 1000) / chosen.length - Date.now()));
      finishedAt.set(id, Date.now());
      await client.cancel(id);
    }
    await sleep(Math.max(0, windowStart + o.windowSeconds * 1000 - Date.now()));
    const limits = endpoint.limitStats('status');
    // Give the last ones a cycle to be noticed, then stop every waiter.
    const deadline = Date.now() + 120_000;
    while (chosen.some((id) => !noticed.has(id)) && Date.now() < deadline) await sleep(200);
    stop.abort();
    const latencies = chosen.filter((id) => noticed.has(id)).map((id) => (noticed.get(id)! - finishedAt.get(id)!) / 1000);
    const result = {
      n: o.n,
      statusPolling: o.perStage ? 'a long-poll per waiter (baseline)' : `shared poller, share ${o.share ?? 0.75}`,
      windowSeconds: o.windowSeconds,
      poller: o.perStage ? undefined : { ...poller.budget, ...poller.stats() },
      /** runpod-local's counts of /status + /status-sync in the window, against RunPod's limits. */
      statusLimits: limits,
      statusRequestsPerSecond: limits ? round(limits.admitted / o.windowSeconds, 1) : undefined,
      failedPolls: errors,
      finished: { chosen: chosen.length, noticed: latencies.length },
      completionNoticedSeconds: { p50: round(percentile(latencies, 50)), p99: round(percentile(latencies, 99)), max: round(Math.max(...latencies)) },
      /** This process (runpod-local holding the jobs, and the waiters): RSS before and while they wait. */
      rssMiB: { before: round(rssBefore / 2 ** 20, 1), waiting: round(rssWaiting / 2 ** 20, 1), perWaiterKiB: round((rssWaiting - rssBefore) / 1024 / o.n, 2) },
      target: { statusConcurrent: 400, statusPerSecond: 200, completionNoticedP50Seconds: 1 },
    };
    await Promise.race([Promise.all(waiters), sleep(LONG_POLL_MS + 5_000)]);
    await client.purgeQueue().catch(() => {});
    return result;
  } finally {
    await rl.stop();
  }
}
