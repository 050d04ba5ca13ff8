// The chaos suite's drills: each injects one fault into the running stack and says whether it
// really happened, with the evidence (a drill that never found its moment is reported, not
// counted as survived). The audit (audit.ts) checks the lasting evidence in the ledger afterwards.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Client } from '@temporalio/client';
import type { TrainRequest } from '../contract/pipeline.js';
import { RunpodClient, RunpodJobNotFound } from '../lib/runpod-client.js';
import { getJson, listKeys, makeStorage } from '../lib/s3.js';
import { openGpuJobKey } from '../lib/keys.js';
import type { RunpodLocalEndpoint } from '../runpod-local/index.js';
import { repoRoot } from '../lib/toolchain.js';
import type { Stack } from '../stack/index.js';
import { startS3Proxy } from '../stack/s3-proxy.js';
import { freePort } from '../stack/services.js';
import type { ChaosOptions, DrillName } from './options.js';

export interface DrillRecord {
  drill: DrillName;
  /** It found its moment and did what it says. */
  fired: boolean;
  evidence: string;
  /** The GPU job it hit, for the audit to look up. */
  gpuJobId?: string;
  /** The pipeline it hit. */
  workflowId?: string;
}

export interface DrillContext {
  stack: Stack;
  client: Client;
  opts: ChaosOptions;
  /** Pipelines by workflow id, with their requests. */
  pipelines: Map<string, TrainRequest>;
  /** Pipelines a drill cancelled (the audit expects them CANCELLED, unless retried). */
  cancelled: Set<string>;
  /** Pipelines a drill started again after a cancel (the audit expects them published). */
  retried: Set<string>;
  /** GPU jobs a drill has hit already: each drill takes a job of its own. */
  hit: Set<string>;
  /** Pipelines whose fault must play out (the service retrying a killed job): no drill cancels them. */
  spared: Set<string>;
  /** Drills that change one thing (the endpoint's one API fault setting, the Temporal worker
   * process) take turns on it: see `exclusive`. */
  turns: Record<'api' | 'worker', Promise<unknown>>;
  say: (line: string) => void;
}

export type Drill = (ctx: DrillContext) => Promise<DrillRecord>;

/** Runs `fn` once the drills before it that change the same thing are done. */
function exclusive<T>(ctx: DrillContext, what: keyof DrillContext['turns'], fn: () => Promise<T>): Promise<T> {
  const run = ctx.turns[what].then(fn, fn);
  ctx.turns[what] = run.catch(() => undefined);
  return run;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits up to `ms` for `find` to return something. Long by default: a killed Temporal worker's
 * activities wait out their heartbeat timeout (a minute) before they run again, so a drill's
 * moment can come late.
 */
async function wait<T>(find: () => T | undefined | Promise<T | undefined>, ms = 180_000): Promise<T | undefined> {
  for (const deadline = Date.now() + ms; Date.now() < deadline; await sleep(150)) {
    const found = await find();
    if (found !== undefined) return found;
  }
  return undefined;
}

/** A training job in progress that no drill has hit yet. */
const runningTrainings = (ctx: DrillContext, minSteps = 3) =>
  ctx.stack.runpod.ledger().filter((e) => e.task === 'train' && e.status === 'IN_PROGRESS' && e.progressUpdates >= minSteps && !ctx.hit.has(e.id));
const runningTraining = (ctx: DrillContext, minSteps = 3) => runningTrainings(ctx, minSteps)[0];
/** A count summed over every endpoint of the stack. */
const sumOf = (ctx: DrillContext, count: (e: RunpodLocalEndpoint) => number) => ctx.stack.runpod.endpoints().reduce((n, e) => n + count(e), 0);

/** A training job that will still be there when a cancel arrives: one waiting in the queue (its
 * cancel must reach it too), else the running one with the most of its short segment left. */
const trainingToCancel = (ctx: DrillContext) =>
  ctx.stack.runpod
    .ledger()
    .filter((e) => e.task === 'train' && (e.status === 'IN_QUEUE' || (e.status === 'IN_PROGRESS' && e.progressUpdates >= 1)) && !ctx.hit.has(e.id))
    .sort((a, b) => (a.status === 'IN_QUEUE' ? -1 : a.progressUpdates) - (b.status === 'IN_QUEUE' ? -1 : b.progressUpdates))[0];

export const drills: Record<DrillName, Drill> = {
  async 'no-capacity'(ctx) {
    // The first endpoint hands out no job for a while: what queues there must move to the second
    // and run there; the audit checks that no training ran twice.
    const first = ctx.stack.runpod.endpoint();
    const second = ctx.stack.runpod.endpoint(`${first.endpointId}-b`);
    const since = new Date().toISOString();
    first.patchFaults({ noCapacity: true });
    const moved = await wait(() => second.ledger().find((e) => e.task === 'train' && e.submittedAt >= since && e.status === 'COMPLETED'), 120_000);
    first.patchFaults({ noCapacity: false });
    const cancelled = first.ledger().filter((e) => e.submittedAt >= since && e.status === 'CANCELLED' && e.attempts.length === 0).length;
    return {
      drill: 'no-capacity',
      fired: moved !== undefined,
      ...(moved ? { gpuJobId: moved.id } : {}),
      evidence: moved
        ? `${first.endpointId} had no capacity: ${cancelled} queued jobs were cancelled there untaken, training ${moved.id} ran on ${second.endpointId}`
        : `no training moved to ${second.endpointId} in time`,
    };
  },

  async 'gpu-kill'(ctx) {
    // A training of a pipeline no drill cancels: the service's retry of the job must play out.
    const hit = await wait(async () => {
      for (const job of runningTrainings(ctx)) {
        const owner = await ownerOf(ctx, job.id);
        // The process running the job now, looked up after the wait: worker ids repeat across
        // endpoints, and a worker whose job just ended has moved on to another one.
        const worker = ctx.stack.runpod.workers().find((w) => w.endpointId === job.endpointId && w.jobs?.includes(job.id) && w.pid && w.state === 'running');
        // Taken in the same tick as the check: two gpu-kill drills must not pick one job.
        if (worker && owner && !ctx.cancelled.has(owner) && !ctx.hit.has(job.id)) {
          ctx.hit.add(job.id);
          return { job, worker, owner };
        }
      }
      return undefined;
    });
    if (!hit) return { drill: 'gpu-kill', fired: false, evidence: 'no training was running' };
    ctx.spared.add(hit.owner);
    process.kill(hit.worker.pid!, 'SIGKILL');
    return { drill: 'gpu-kill', fired: true, gpuJobId: hit.job.id, evidence: `GPU worker ${hit.worker.workerId} killed (-9) at step ${hit.job.progressUpdates} of job ${hit.job.id}` };
  },

  async 'result-crash'(ctx) {
    // On every endpoint (a training may be running on the second one), once in all.
    const crashes = () => sumOf(ctx, (e) => e.faults().injected.crashes);
    const before = crashes();
    for (const e of ctx.stack.runpod.endpoints()) e.patchFaults({ workerCrash: { at: 'result', times: 1, task: 'train' } });
    const crashed = await wait(() => (crashes() > before ? true : undefined));
    for (const e of ctx.stack.runpod.endpoints()) e.patchFaults({ workerCrash: null });
    return { drill: 'result-crash', fired: crashed === true, evidence: crashed ? 'a GPU worker died posting a training result (the result was lost)' : 'no training posted a result in time' };
  },

  async 'api-storm'(ctx) {
    // While GPU stages are polling: from the first training on, until some requests were refused.
    if (!(await wait(() => runningTraining(ctx, 1)))) return { drill: 'api-storm', fired: false, evidence: 'no GPU stage was polling' };
    return exclusive(ctx, 'api', async () => {
      // Every endpoint: the stages may be polling the second one.
      const injected = () => sumOf(ctx, (e) => e.faults().injected.throttled + e.faults().injected.errors);
      const before = injected();
      const started = Date.now();
      for (const e of ctx.stack.runpod.endpoints()) e.patchFaults({ api: { throttleRate: 0.3, errorRate: 0.2, errorStatus: 503, latencyMs: 150 } });
      // Up to 90 s: the Temporal worker may be down (another drill), and nothing polls meanwhile.
      await wait(() => (injected() - before >= 5 || Date.now() - started > 90_000 ? true : undefined));
      for (const e of ctx.stack.runpod.endpoints()) e.patchFaults({ api: { throttleRate: undefined, errorRate: undefined, errorStatus: undefined, latencyMs: undefined } });
      const n = injected() - before;
      return { drill: 'api-storm', fired: n > 0, evidence: `RunPod API answered ${n} requests with 429 or 503 over ${Math.round((Date.now() - started) / 1000)} s (+150 ms each)` };
    });
  },

  async 'error-after-create'(ctx) {
    const endpoint = ctx.stack.runpod.endpoint();
    const before = endpoint.faults().injected.errorsAfterCreate;
    endpoint.patchFaults({ api: { errorAfterCreateNext: 2 } });
    const hit = await wait(() => (endpoint.faults().injected.errorsAfterCreate > before ? true : undefined));
    return { drill: 'error-after-create', fired: hit === true, evidence: hit ? '/run created jobs and answered 503 (the client submitted again)' : 'no /run came in time' };
  },

  async 'lost-claim-reply'(ctx) {
    const proxy = ctx.stack.s3Proxy!;
    const before = proxy.counts.claimRepliesLost;
    proxy.loseClaimReplies(2);
    const hit = await wait(() => (proxy.counts.claimRepliesLost > before ? true : undefined));
    proxy.loseClaimReplies(0);
    return { drill: 'lost-claim-reply', fired: hit === true, evidence: hit ? `${proxy.counts.claimRepliesLost - before} claim PUTs applied by the store, their answers lost` : 'no claim was written in time' };
  },

  async 'no-conditional-writes'(ctx) {
    // A second worker pointed at the same store behind a proxy that ignores If-None-Match.
    const port = await freePort();
    const proxy = await startS3Proxy({ port, upstream: ctx.stack.config.LORAFLOW_S3_ENDPOINT, ignoreConditionalWrites: true });
    try {
      const res = await promisify(execFile)(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'worker.ts')], {
        cwd: repoRoot,
        env: { ...ctx.stack.env, LORAFLOW_S3_ENDPOINT: proxy.url, LORAFLOW_JANITOR_MINUTES: '0', LORAFLOW_METRICS_ADDRESS: '' },
        timeout: 60_000,
      }).then(
        () => ({ code: 0, stderr: '' }),
        (err: { code: number; stderr: string }) => err,
      );
      const refused = res.code === 1 && /does not enforce conditional writes/.test(res.stderr);
      return { drill: 'no-conditional-writes', fired: refused, evidence: refused ? 'a worker on a store that ignores If-None-Match refused to start' : `the worker did not refuse (exit ${res.code})` };
    } finally {
      await proxy.stop();
    }
  },

  async 's3-blackhole'(ctx) {
    const proxy = ctx.stack.s3Proxy!;
    const before = proxy.counts.blackholed;
    proxy.setMode('blackhole');
    await sleep(ctx.opts.s3BlackholeMs);
    // Held on (up to 30 s more) until something called: every stage may have been between calls.
    await wait(() => (proxy.counts.blackholed > before ? true : undefined), 30_000);
    proxy.setMode('pass');
    const n = proxy.counts.blackholed - before;
    return { drill: 's3-blackhole', fired: n > 0, evidence: `S3 took ${n} requests in ${ctx.opts.s3BlackholeMs / 1000} s and answered none` };
  },

  async 's3-down'(ctx) {
    await ctx.stack.stopS3();
    await sleep(ctx.opts.s3DownMs);
    await ctx.stack.startS3();
    return { drill: 's3-down', fired: true, evidence: `S3 stopped for ${ctx.opts.s3DownMs / 1000} s` };
  },

  async 'temporal-restart-in-long-poll'(ctx) {
    const open = await wait(() => {
      const n = sumOf(ctx, (e) => e.openStatusRequests());
      return n > 0 ? n : undefined;
    });
    if (!open) return { drill: 'temporal-restart-in-long-poll', fired: false, evidence: 'no /status-sync was open' };
    await ctx.stack.restartTemporal(2_000);
    return { drill: 'temporal-restart-in-long-poll', fired: true, evidence: `Temporal server killed (-9) with ${open} /status-sync long-polls open, back on its SQLite file after 2 s` };
  },

  async 'worker-kill'(ctx) {
    return exclusive(ctx, 'worker', async () => {
      ctx.stack.worker?.child.kill('SIGKILL');
      await sleep(500);
      await ctx.stack.startWorker();
      return { drill: 'worker-kill', fired: true, evidence: 'Temporal worker killed (-9) and restarted' };
    });
  },

  async 'outage-past-retention'(ctx) {
    const job = await wait(() => runningTraining(ctx, 1));
    if (!job) return { drill: 'outage-past-retention', fired: false, evidence: 'no training was running' };
    ctx.hit.add(job.id);
    return exclusive(ctx, 'worker', async () => {
      ctx.stack.worker?.child.kill('SIGKILL');
      // Down until the job has ended and the endpoint has purged it.
      const ended = await wait(() => ctx.stack.runpod.ledger().find((e) => e.id === job.id && e.finishedAt), 60_000);
      await sleep(ctx.opts.resultTtlMs + 1_500);
      // Asked until the endpoint answers (an API storm may be on): 404 means purged.
      const runpod = RunpodClient.fromConfig({ ...ctx.stack.config, RUNPOD_ENDPOINT_ID: job.endpointId }); // where the job lives
      const answer = await wait(() => runpod.status(job.id).then(() => 'kept' as const, (err: unknown) => (err instanceof RunpodJobNotFound ? ('purged' as const) : undefined)), 30_000);
      await ctx.stack.startWorker();
      return {
        drill: 'outage-past-retention',
        fired: ended !== undefined && answer === 'purged',
        gpuJobId: job.id,
        evidence: !ended ? 'the job did not end during the outage' : answer === 'purged' ? `Temporal worker down while job ${job.id} ended and its result was purged (${ctx.opts.resultTtlMs / 1000} s retention)` : `job ${job.id} ended but the endpoint still had it`,
      };
    });
  },

  async cancel(ctx) {
    const ids = [...ctx.pipelines.keys()].filter((id) => !ctx.cancelled.has(id) && !ctx.spared.has(id));
    const id = ids[Math.floor(Math.random() * ids.length)];
    if (!id) return { drill: 'cancel', fired: false, evidence: 'no pipeline left' };
    ctx.cancelled.add(id);
    const done = await ctx.client.workflow.getHandle(id).cancel().then(() => true, () => false);
    return { drill: 'cancel', fired: done, workflowId: id, evidence: `cancelled ${id}` };
  },

  async 'cancel-in-429-storm'(ctx) {
    return exclusive(ctx, 'api', async () => {
      // Chosen once the API is ours, of a pipeline no other drill cancelled.
      const target = await wait(async () => {
        const job = trainingToCancel(ctx);
        const id = job && (await ownerOf(ctx, job.id).catch(() => undefined));
        return job && id && !ctx.cancelled.has(id) && !ctx.spared.has(id) ? { job, id } : undefined;
      });
      if (!target) return { drill: 'cancel-in-429-storm', fired: false, evidence: 'no training to cancel' };
      const { job, id } = target;
      ctx.hit.add(job.id);
      // On every endpoint: by the time the cancel reaches the stage, its training may hold a job on
      // the other one (a segment queued past the limit moves; a CI run missed the drill so).
      const throttled = () => sumOf(ctx, (e) => e.faults().injected.throttled);
      const before = throttled();
      for (const e of ctx.stack.runpod.endpoints()) e.patchFaults({ api: { throttleNext: 2, operations: ['cancel'] } });
      ctx.cancelled.add(id);
      await ctx.client.workflow.getHandle(id).cancel().catch(() => undefined);
      // The cancel reaches whichever job holds the training by then (segments are short): wait for
      // the pipeline to close and every GPU job it submitted to end.
      let closedAs: string | undefined;
      const ended = await wait(async () => {
        const d = await ctx.client.workflow.getHandle(id).describe().catch(() => undefined);
        if (!d || d.status.name === 'RUNNING') return undefined;
        closedAs = d.status.name; // this run's end: retry-cancelled-request may start another later
        const mine = new Set(await jobsOf(ctx, id).catch(() => []));
        const jobs = ctx.stack.runpod.ledger().filter((e) => mine.has(e.id));
        return jobs.some((e) => e.status === 'IN_QUEUE' || e.status === 'IN_PROGRESS') ? undefined : jobs;
      }, 90_000);
      for (const e of ctx.stack.runpod.endpoints()) e.patchFaults({ api: { throttleNext: undefined, operations: undefined } });
      const refused = throttled() - before;
      const cancelledJobs = ended?.filter((e) => e.status === 'CANCELLED').length ?? 0;
      return {
        drill: 'cancel-in-429-storm',
        fired: ended !== undefined && refused > 0 && closedAs === 'CANCELLED',
        workflowId: id,
        gpuJobId: job.id,
        evidence: ended
          ? `cancelled ${id} while ${refused} /cancel calls were answered 429; it closed ${closedAs}, all its ${ended.length} GPU jobs ended (${cancelledJobs} cancelled, the others finished first)`
          : `cancelled ${id} while ${refused} /cancel calls were answered 429; it still has GPU jobs running`,
      };
    });
  },

  async 'retry-cancelled-request'(ctx) {
    // The pipeline a cancel drill stopped, started again: a new run of the same workflow id.
    const id = await wait(async () => {
      for (const c of ctx.cancelled) {
        if (ctx.retried.has(c)) continue;
        const d = await ctx.client.workflow.getHandle(c).describe().catch(() => undefined);
        if (d?.status.name === 'CANCELLED') return c;
      }
      return undefined;
    });
    if (!id) return { drill: 'retry-cancelled-request', fired: false, evidence: 'no cancelled pipeline to retry' };
    ctx.retried.add(id);
    await ctx.client.workflow.start('trainLora', { taskQueue: ctx.stack.config.LORAFLOW_TASK_QUEUE, workflowId: id, args: [ctx.pipelines.get(id)!], workflowIdReusePolicy: 'ALLOW_DUPLICATE_FAILED_ONLY' });
    return { drill: 'retry-cancelled-request', fired: true, workflowId: id, evidence: `started ${id} again after its cancel` };
  },
};

/** The GPU jobs a pipeline submitted (every run), from their claims. */
/** Every GPU job the pipeline's runs submitted, from their job records (runs/<workflow id>/<run>/gpu-jobs/). */
async function jobsOf(ctx: DrillContext, workflowId: string): Promise<string[]> {
  const storage = makeStorage(ctx.stack.config);
  const records = (await listKeys(storage, `runs/${workflowId}/`)).filter((k) => k.includes('/gpu-jobs/'));
  return Promise.all(records.map(async (key) => (await getJson<{ gpuJobId: string }>(storage, key)).gpuJobId));
}

/** The pipeline a queued or running GPU job belongs to, from the open-jobs index its submission wrote. */
async function ownerOf(ctx: DrillContext, gpuJobId: string): Promise<string | undefined> {
  const open = await getJson<{ workflowId: string }>(makeStorage(ctx.stack.config), openGpuJobKey(gpuJobId)).catch(() => undefined);
  return open && ctx.pipelines.has(open.workflowId) ? open.workflowId : undefined;
}
