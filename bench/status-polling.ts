// Item 3b: the status-polling path alone at N waiting jobs, without Temporal: N jobs on a
// runpod-local endpoint with no worker processes (RunPod's status limits as documented; /run's own
// limit lifted so 10,000 jobs can be queued in seconds), each waited on by a loop shaped like
// waitUntilFinished, either through one shared StatusPoller (what the worker does now) or with a
// long-poll of its own (the baseline, what each stage did before). Two kinds of jobs:
// - queued (default): the jobs stay IN_QUEUE and chosen ones are cancelled (a final state) during
//   the window, at times nothing announced;
// - trainings: an in-process worker (runpod-local's inProcessWorker) takes every job and reports
//   training progress as the GPU worker does (contract/gpu-job.ts GpuProgress, every 5 s per job)
//   with an etaSeconds that points at when it will end; chosen jobs then end (COMPLETED) at their
//   ETA ± up to 2 s (uniform: an estimate from measured it/s is that close near the end), spread
//   over the window; the others' ETAs lie 10 s to 30 min past it. Without ETAs (noEta) their
//   ends are unannounced, and with `webhook` each job names a completion webhook that nudges
//   the poller (lib/completion-webhook.ts), as the worker's does.
// Reported: how long until a chosen job's waiter noticed its end, runpod-local's counts of the
// status requests against the limits, and this process's RSS per waiting job.
import { RunpodClient, RunpodHttpError, type RunpodJobStatus, isFinalState } from '../lib/runpod-client.js';
import { StatusPoller } from '../lib/status-poller.js';
import { completionWebhookFor, serveCompletionWebhook } from '../lib/completion-webhook.js';
import { loopbackWebhookEnv } from '../testkit/services.js';
import type { GpuProgress } from '../contract/gpu-job.js';
import { startRunpodLocal, type InProcessWorker } from '../runpod-local/index.js';
import { setMaxListeners } from 'node:events';
import { pino } from 'pino';
import { API_KEY, percentile, pool, procSample, round, sleep } from './lib.js';

const LONG_POLL_MS = 10_000;
const POLL_MS = 1_000;
/** How often a running training reports progress, and how far its reported end may miss the real one. */
const PROGRESS_MS = 5_000;
const ETA_JITTER_MS = 2_000;

export async function benchStatusPolling(o: {
  n: number;
  windowSeconds: number;
  finish: number;
  trainings?: boolean;
  /** Trainings report no ETA (default: they do): their ends are unannounced. */
  noEta?: boolean;
  /** Jobs name a completion webhook (lib/completion-webhook.ts) that nudges the shared poller. */
  webhook?: boolean;
  perStage?: boolean;
  share?: number;
  log: (m: string) => void;
}) {
  const rl = await startRunpodLocal({
    port: 0,
    apiKey: API_KEY,
    workerCommand: [],
    workers: 0,
    rateLimits: { run: 1_000_000_000 },
    executionTimeoutMs: 0, // trainings outlast the bench
    logger: pino({ level: 'silent' }),
  });
  const timers = new Set<NodeJS.Timeout>();
  const closers: (() => Promise<void>)[] = [];
  try {
    const client = new RunpodClient({ baseUrl: rl.url, apiKey: API_KEY, endpointId: rl.endpointId });
    const poller = new StatusPoller(client, { share: o.share ?? 0.75, longPollMs: LONG_POLL_MS, minIntervalMs: POLL_MS });
    const env = o.webhook ? await loopbackWebhookEnv() : undefined;
    const hook = env && completionWebhookFor(env.LORAFLOW_RUNPOD_WEBHOOK_URL, env.LORAFLOW_RUNPOD_WEBHOOK_LISTEN);
    const receiver = hook ? await serveCompletionWebhook(hook, (id) => poller.nudge(id)) : undefined;
    if (receiver) closers.push(receiver.close);
    const ids = await pool(Array.from({ length: o.n }, (_, i) => i), 100, async (i) => (await client.run({ i }, hook ? { webhook: hook.url } : {})).id);
    // Every job asked at least once before the window (a worker that has been up a while).
    const warmupMs = 5_000 + (o.n / poller.budget.perSecond) * 1000;
    const chosen = Array.from({ length: Math.min(o.finish, o.n) }, (_, i) => ids[Math.floor(((i + 0.5) * o.n) / Math.min(o.finish, o.n))]!);
    const windowStart = Date.now() + warmupMs;
    const finishedAt = new Map<string, number>();
    if (o.trainings) startTrainings(rl.endpoint().inProcessWorker('bench'), ids, chosen, windowStart, o.windowSeconds * 1000, finishedAt, timers, !o.noEta);
    global.gc?.();
    const rssBefore = procSample(process.pid)?.rss ?? 0;
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
    await sleep(Math.max(0, windowStart - Date.now()));
    const endpoint = rl.endpoint();
    endpoint.resetLimitStats();
    global.gc?.();
    const rssWaiting = procSample(process.pid)?.rss ?? 0;
    if (!o.trainings) {
      for (const [i, id] of chosen.entries()) {
        await sleep(Math.max(0, windowStart + ((i + 0.5) * o.windowSeconds * 1000) / chosen.length - Date.now()));
        finishedAt.set(id, Date.now());
        await client.cancel(id);
      }
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
      jobs: !o.trainings ? 'queued; chosen ones cancelled' : o.noEta ? 'running trainings reporting no ETA; chosen ones end unannounced' : `running trainings reporting an ETA; chosen ones end at it ± ${ETA_JITTER_MS / 1000} s`,
      completionWebhook: o.webhook === true,
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
    for (const t of timers) clearTimeout(t);
    await Promise.all(closers.map((close) => close()));
    await rl.stop();
  }
}

/**
 * Every job becomes a running training: taken by the in-process worker, reporting progress every
 * PROGRESS_MS (staggered) with the ETA of its planned end. A chosen job plans to end in the window
 * and really ends at that plan ± ETA_JITTER_MS; the others plan to end 10 s to 30 min after it.
 */
function startTrainings(
  worker: InProcessWorker,
  ids: string[],
  chosen: string[],
  windowStart: number,
  windowMs: number,
  finishedAt: Map<string, number>,
  timers: Set<NodeJS.Timeout>,
  eta: boolean,
): void {
  const startedAt = Date.now();
  const plannedAt = new Map<string, number>();
  for (const id of ids) plannedAt.set(id, windowStart + windowMs + 10_000 + Math.random() * 1_800_000);
  for (const [i, id] of chosen.entries()) plannedAt.set(id, windowStart + ((i + 0.5) * windowMs) / chosen.length);
  const totalSteps = 2_000;
  const progress = (id: string) => {
    const now = Date.now();
    const itPerSec = totalSteps / ((plannedAt.get(id)! - startedAt) / 1000);
    const step = Math.min(totalSteps, Math.round(((now - startedAt) / 1000) * itPerSec));
    const etaSeconds = Math.max(0, (plannedAt.get(id)! - now) / 1000);
    worker.report(id, { status: 'IN_PROGRESS', output: { phase: 'training', step, totalSteps, itPerSec, ...(eta ? { etaSeconds } : {}) } satisfies GpuProgress });
  };
  const later = (ms: number, f: () => void) => {
    const t = setTimeout(() => (timers.delete(t), f()), Math.max(0, ms));
    timers.add(t);
  };
  void worker.take(ids.length).then((taken) => {
    if (taken.length !== ids.length) throw new Error(`in-process worker took ${taken.length} of ${ids.length} jobs`);
    // A fifth of the jobs reports each second.
    const tick = (k: number) => {
      for (let i = k % 5; i < ids.length; i += 5) if (!finishedAt.has(ids[i]!)) progress(ids[i]!);
      later(PROGRESS_MS / 5, () => tick(k + 1));
    };
    tick(0);
    for (const id of chosen) {
      later(plannedAt.get(id)! + (Math.random() * 2 - 1) * ETA_JITTER_MS - Date.now(), () => {
        finishedAt.set(id, Date.now());
        worker.report(id, { output: { ok: true } });
      });
    }
  });
}
