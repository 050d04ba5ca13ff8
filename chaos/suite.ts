// The chaos suite: many pipelines on the embedded stack while faults are injected — the Temporal
// worker and server killed, GPU workers crashing mid-training, RunPod API errors and latency,
// S3 down, cancels at random moments — then the ledger, S3 and Temporal are audited.
// The GPU worker is the scripted one (test/fixtures/scripted_gpu_handler.py): it honours the real
// contract (claims, checkpoints, resume) and reports one progress update per step, so paid and
// lost steps can be counted exactly.
import path from 'node:path';
import { type Client, WorkflowExecutionAlreadyStartedError, WorkflowFailedError } from '@temporalio/client';
import { failureText } from '../cli/watch.js';
import { connect } from '../cli/connect.js';
import { fingerprintDataset } from '../cli/fingerprint.js';
import { TrainRequest } from '../contract/pipeline.js';
import { repoRoot, toolchain } from '../lib/toolchain.js';
import { type Stack, startStack } from '../stack/index.js';
import { makeDataset } from '../testkit/datasets.js';
import { stackEnv, tempDir } from '../testkit/services.js';
import { trainLora } from '../workflows/index.js';
import { audit, type ChaosReport, type PipelineOutcome } from './audit.js';
import type { ChaosOptions } from './options.js';

export { FULL, QUICK } from './options.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const say = opts.say ?? (() => {});
  const tmp = tempDir('chaos');
  const env = {
    ...(await stackEnv(tmp.dir)),
    LORAFLOW_POLL_MS: '500',
    LORAFLOW_CHECKPOINT_EVERY: String(opts.checkpointEvery),
  };
  const stack = await startStack({
    env,
    say: (m) => say(`stack: ${m}`),
    gpuWorkerCommand: [toolchain.python(), '-u', path.join(repoRoot, 'test/fixtures/scripted_gpu_handler.py')],
    gpuWorkers: 3,
  });
  const faults: string[] = [];
  const note = (fault: string) => {
    faults.push(fault);
    say(`fault: ${fault}`);
  };
  try {
    const client = await connect(stack.config);
    const ids = await startPipelines(client, stack, tmp.dir, opts);
    say(`${ids.length} pipelines started`);
    const cancelled = new Set<string>();

    // One GPU worker dies as it posts a finished training's result (the result is lost).
    stack.runpod.endpoint().setFaults({ workerCrash: { at: 'result', times: 1, task: 'train' } });
    note('GPU worker SIGKILL while posting a result × 1');

    // setFaults replaces the whole config: carry the GPU crashes still to come across API changes.
    const withCrashesLeft = async (api?: object) => {
      const admin = `${stack.runpod.url.replace(/\/v2$/, '')}/admin/${stack.runpod.endpointId}/faults`;
      const current = (await (await fetch(admin, { headers: { Authorization: `Bearer ${stack.config.RUNPOD_API_KEY}` } })).json()) as { crashesLeft: number };
      const crash = current.crashesLeft > 0 ? { workerCrash: { at: 'result' as const, times: current.crashesLeft, task: 'train' } } : {};
      stack.runpod.endpoint().setFaults({ ...crash, ...(api ? { api } : {}) });
    };
    const schedule: [number, () => Promise<void>][] = [
      [2_000, async () => {
        await withCrashesLeft({ throttleRate: 0.15, errorRate: 0.1, errorStatus: 503, latencyMs: 150 });
        note('RunPod API: 15% 429, 10% 503, +150 ms latency');
      }],
      [20_000, async () => {
        await withCrashesLeft();
        note('RunPod API faults off');
      }],
      [8_000, async () => {
        await stack.restartTemporal(2_000);
        note('Temporal server killed (-9), restarted on its SQLite file after 2 s');
      }],
      [12_000, async () => {
        await stack.stopS3();
        note(`S3 stopped for ${opts.s3DownMs / 1000} s`);
        await sleep(opts.s3DownMs);
        await stack.startS3();
        note('S3 back');
      }],
    ];
    for (let i = 0; i < opts.cancels; i++) {
      schedule.push([3_000 + Math.floor(Math.random() * 20_000), async () => {
        const id = ids[Math.floor(Math.random() * ids.length)]!;
        if (cancelled.has(id)) return;
        cancelled.add(id);
        await client.workflow.getHandle(id).cancel().catch(() => undefined);
        note(`cancelled ${id}`);
      }]);
    }
    // GPU worker processes killed mid-training: the replacement job resumes from the last checkpoint.
    for (let i = 0; i < opts.gpuCrashes; i++) {
      schedule.push([5_000 + i * 6_000, async () => {
        // Wait for a training a few steps in, then kill the worker running it.
        for (const deadline = Date.now() + 30_000; Date.now() < deadline; await sleep(200)) {
          const training = stack.runpod.ledger().find((e) => e.task === 'train' && e.status === 'IN_PROGRESS' && e.progressUpdates >= 3);
          const victim = training && stack.runpod.workers().find((w) => w.workerId === training.workerId && w.pid);
          if (!victim) continue;
          process.kill(victim.pid!, 'SIGKILL');
          note(`GPU worker ${victim.workerId} killed (-9) at step ${training.progressUpdates} of a training`);
          return;
        }
      }]);
    }
    // kill -9 of the Temporal worker, spread over the run: at stage boundaries and mid-poll alike.
    for (let i = 0; i < opts.workerKills; i++) {
      schedule.push([4_000 + i * 9_000, async () => {
        stack.worker?.child.kill('SIGKILL');
        await sleep(500);
        await stack.startWorker();
        note('Temporal worker killed (-9) and restarted');
      }]);
    }
    const started = Date.now();
    const drills = schedule.map(async ([at, drill]) => {
      await sleep(at);
      await drill().catch((err: unknown) => say(`drill failed: ${String(err)}`));
    });

    const outcomes = await waitForAll(client, ids, cancelled, started + opts.timeoutMs, say);
    await Promise.all(drills);
    await sleep(5_000); // let cancels and late job-done posts settle before the audit
    return await audit({ stack, outcomes, faults, opts, elapsedMs: Date.now() - started });
  } finally {
    await stack.stop();
    tmp.remove();
  }
}

async function startPipelines(client: Client, stack: Stack, dir: string, opts: ChaosOptions): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < opts.pipelines; i++) {
    // Every third dataset has no sidecar captions, so caption jobs run under fire too.
    const dataset = await makeDataset(path.join(dir, `ds-${i}`), { images: 3, captioned: i % 3 === 0 ? 0 : 3, size: 16 + i });
    const request = TrainRequest.parse({
      name: `chaos-${i}`,
      dataset: { path: dataset, fingerprint: await fingerprintDataset(dataset) },
      // The scripted worker sleeps `seed` ms a step.
      training: { triggerWord: 'lfchaos', baseModel: 'scripted', params: { steps: opts.steps, seed: opts.msPerStep } },
    });
    const workflowId = `chaos-${i}-${Date.now()}`;
    await client.workflow
      .start(trainLora, { taskQueue: stack.config.LORAFLOW_TASK_QUEUE, workflowId, args: [request] })
      .catch((err: unknown) => {
        if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      });
    ids.push(workflowId);
  }
  return ids;
}

/** Polls every pipeline until each is closed (or the deadline), riding out Temporal's restarts. */
async function waitForAll(client: Client, ids: string[], cancelled: Set<string>, deadline: number, say: (l: string) => void): Promise<PipelineOutcome[]> {
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
      closed.set(id, { workflowId: id, status: description.status.name, cancelRequested: cancelled.has(id), ...outcome });
      say(`${id}: ${description.status.name}${'error' in outcome ? ` ${outcome.error}` : ''} (${closed.size}/${ids.length})`);
    }
    await sleep(1_000);
  }
  return ids.map((id) => closed.get(id) ?? { workflowId: id, status: 'NOT_CLOSED', cancelRequested: cancelled.has(id) });
}
