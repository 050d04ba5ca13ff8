// The chaos suite: many pipelines on the embedded stack, with runpod-local at the service's rules
// (dead workers' jobs retried under their id, results purged after a short retention), while the
// drills (drills.ts) break things: GPU workers and the Temporal worker and server killed, RunPod
// API errors and lost answers, S3 down or black-holed, claim replies lost, cancels (one in a storm
// of 429s, one retried as the same request). Then the ledger, S3 and Temporal are audited.
// The GPU worker is the scripted one (test/fixtures/scripted_gpu_handler.py): it honours the real
// contract (claims, checkpoints, resume) and reports one progress update per step, so paid and
// lost steps can be counted exactly.
import path from 'node:path';
import { type Client, WorkflowFailedError } from '@temporalio/client';
import { connect } from '../cli/connect.js';
import { fingerprintDataset } from '../cli/fingerprint.js';
import { failureText } from '../cli/watch.js';
import { TrainRequest } from '../contract/pipeline.js';
import { repoRoot, toolchain } from '../lib/toolchain.js';
import { startStack } from '../stack/index.js';
import { makeDataset } from '../testkit/datasets.js';
import { stackEnv, tempDir } from '../testkit/services.js';
import { trainLora } from '../workflows/index.js';
import { audit, type ChaosReport, type PipelineOutcome } from './audit.js';
import { type DrillContext, type DrillRecord, drills } from './drills.js';
import { type ChaosOptions, DRILLS, type DrillName } from './options.js';

export { FULL, MUTATION, QUICK } from './options.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** When each drill fires (ms after the pipelines start), by the options' counts. */
function plan(opts: ChaosOptions): [number, DrillName][] {
  const at: [number, DrillName][] = [
    [1_000, 'result-crash'],
    [2_000, 'api-storm'],
    [2_500, 'error-after-create'],
    [3_000, 'lost-claim-reply'],
    [3_500, 'no-conditional-writes'],
    [6_000, 'temporal-restart-in-long-poll'],
    [8_000, 'no-capacity'],
    [10_000, 's3-blackhole'],
    [12_000, 'cancel-in-429-storm'],
    [22_000, 's3-down'],
    [26_000, 'outage-past-retention'],
    [30_000, 'retry-cancelled-request'],
  ];
  for (let i = 0; i < opts.gpuKills; i++) at.push([4_000 + i * 5_000, 'gpu-kill']);
  for (let i = 0; i < opts.workerKills; i++) at.push([5_000 + i * 9_000, 'worker-kill']);
  for (let i = 0; i < opts.cancels; i++) at.push([3_000 + Math.floor(Math.random() * 15_000), 'cancel']);
  const only = new Set<DrillName>(opts.drills ?? DRILLS);
  return at.filter(([, d]) => only.has(d)).sort((a, b) => a[0] - b[0]);
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const say = opts.say ?? (() => {});
  const tmp = tempDir('chaos');
  const stack = await startStack({
    env: {
      ...(await stackEnv(tmp.dir)),
      LORAFLOW_POLL_MS: '500',
      LORAFLOW_CHECKPOINT_EVERY: String(opts.checkpointEvery),
      LORAFLOW_SEGMENT_SECONDS: String(opts.segmentSeconds),
      LORAFLOW_S3_TIMEOUT_MS: '5000',
      LORAFLOW_JANITOR_MINUTES: '0',
      // Jobs queued this long on the first endpoint move to the second (the no-capacity drill).
      LORAFLOW_ENDPOINT_QUEUE_WAIT_SECONDS: '8',
    },
    say: (m) => say(`stack: ${m}`),
    gpuWorkerCommand: [toolchain.python(), '-u', path.join(repoRoot, 'test/fixtures/scripted_gpu_handler.py')],
    gpuWorkers: 3,
    endpoint: { resultTtlMs: opts.resultTtlMs, ...(opts.breakClaims ? { workerEnv: { SCRIPTED_SKIP_CLAIMS: '1' } } : {}) },
    s3Proxy: true,
  });
  try {
    const client = await connect(stack.config);
    const ctx: DrillContext = { stack, client, opts, pipelines: await startPipelines(client, stack.config.LORAFLOW_TASK_QUEUE, tmp.dir, opts), cancelled: new Set(), retried: new Set(), hit: new Set(), spared: new Set(), turns: { api: Promise.resolve(), worker: Promise.resolve() }, say };
    say(`${ctx.pipelines.size} pipelines started`);
    const started = Date.now();
    const records: DrillRecord[] = [];
    const running = plan(opts).map(async ([at, name]) => {
      await sleep(at);
      const record = await drills[name](ctx).catch((err: unknown): DrillRecord => ({ drill: name, fired: false, evidence: `the drill itself failed: ${String(err)}` }));
      records.push(record);
      say(`drill ${record.fired ? 'fired' : 'MISSED'}: ${record.drill}: ${record.evidence}`);
    });

    await Promise.all(running);
    const outcomes = await waitForAll(client, ctx, started + opts.timeoutMs, say);
    await sleep(3_000); // let cancels and late job-done posts settle before the audit
    return await audit({ stack, outcomes, drills: records, opts, elapsedMs: Date.now() - started });
  } finally {
    await stack.stop();
    tmp.remove();
  }
}

async function startPipelines(client: Client, taskQueue: string, dir: string, opts: ChaosOptions): Promise<Map<string, TrainRequest>> {
  const pipelines = new Map<string, TrainRequest>();
  for (let i = 0; i < opts.pipelines; i++) {
    // Every third dataset has no sidecar captions, so caption jobs run under fire too.
    const dataset = await makeDataset(path.join(dir, `ds-${i}`), { images: 3, captioned: i % 3 === 0 ? 0 : 3, size: 16 + i });
    const request = TrainRequest.parse({
      name: `chaos-${i}`,
      dataset: { path: dataset, fingerprint: await fingerprintDataset(dataset) },
      // The scripted worker sleeps `seed` ms a step.
      training: { triggerWord: 'lfchaos', baseModel: 'scripted', params: { steps: opts.steps, seed: opts.msPerStep } },
      // One run has a budget: its cost is checked against the endpoint's figures like the others.
      ...(i === 1 ? { budget: 100 } : {}),
    });
    const workflowId = `chaos-${i}-${Date.now()}`;
    await client.workflow.start(trainLora, { taskQueue, workflowId, args: [request] });
    pipelines.set(workflowId, request);
  }
  return pipelines;
}

/** Polls every pipeline until each is closed (a retried one: its new run), riding out Temporal's restarts. */
async function waitForAll(client: Client, ctx: DrillContext, deadline: number, say: (l: string) => void): Promise<PipelineOutcome[]> {
  const ids = [...ctx.pipelines.keys()];
  const closed = new Map<string, PipelineOutcome>();
  while (closed.size < ids.length && Date.now() < deadline) {
    for (const id of ids.filter((x) => !closed.has(x))) {
      const handle = client.workflow.getHandle(id);
      const description = await handle.describe().catch(() => undefined);
      if (!description || description.status.name === 'RUNNING') continue;
      const outcome = await handle.result().then(
        (result) => ({ result }),
        (err: unknown) => ({ error: err instanceof WorkflowFailedError ? failureText(err) : String(err) }),
      );
      const budget = ctx.pipelines.get(id)?.budget;
      closed.set(id, { workflowId: id, status: description.status.name, cancelRequested: ctx.cancelled.has(id) && !ctx.retried.has(id), retried: ctx.retried.has(id), ...(budget !== undefined ? { budget } : {}), ...outcome });
      say(`${id}: ${description.status.name}${'error' in outcome ? ` ${outcome.error}` : ''} (${closed.size}/${ids.length})`);
    }
    await sleep(1_000);
  }
  return ids.map((id) => closed.get(id) ?? { workflowId: id, status: 'NOT_CLOSED', cancelRequested: ctx.cancelled.has(id), retried: ctx.retried.has(id) });
}
