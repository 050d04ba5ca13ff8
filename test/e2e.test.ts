// End to end, as a user runs it: the embedded stack (`loraflow dev`'s code path: Temporal dev
// server, versitygw, the local RunPod endpoint running the real GPU worker on the tiny offline
// model, the Temporal worker process) driven through the `loraflow` CLI.
import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import type { LatestPublished, LoraMetadata, PipelineProgress, PublishedLora } from '../contract/pipeline.js';
import { keyOfUri } from '../lib/keys.js';
import { getBytes, getJson, listKeys, makeStorage, sha256OfObject } from '../lib/s3.js';
import { until } from '../testkit/wait.js';
import { repoRoot, toolchain } from '../lib/toolchain.js';
import { type Stack, startStack } from '../stack/index.js';
import { makeDataset } from '../testkit/datasets.js';
import { freePort, stackEnv, tempDir } from '../testkit/services.js';
import { cliRunner } from '../testkit/cli.js';

const run = promisify(execFile);

let tmp: ReturnType<typeof tempDir>;
let stack: Stack;
let dataset: string;

beforeAll(async () => {
  tmp = tempDir('e2e');
  const env = {
    ...(await stackEnv(tmp.dir)),
    LORAFLOW_POLL_MS: '500',
    LORAFLOW_CHECKPOINT_EVERY: '10',
  };
  // Samples are counted and laid out here, not judged: two denoising steps keep them cheap on CPU.
  stack = await startStack({ env, endpoint: { workerEnv: { LORAFLOW_SAMPLE_STEPS: '2' } } });
  dataset = await makeDataset(path.join(tmp.dir, 'dataset'), { images: 4, captioned: 2, size: 48 });
});

afterAll(async () => {
  await stack?.stop();
  if (!process.env.KEEP_TMP) tmp?.remove();
});

/** Runs the CLI like a user would; resolves with its output and exit code. */
const loraflow = cliRunner(() => stack.env);

const json = <T>(text: string) => JSON.parse(text) as T;
const trainArgs = (name: string, steps: number) => ['train', '--name', name, '--images', dataset, '--trigger', 'lfsquare', '--steps', String(steps), '--json'];
const ledgerFor = (ids: string[]) => stack.runpod.ledger().filter((e) => ids.includes(e.id));

/** `loraflow status --json` until `ok` holds (a failed call reads as no progress yet). */
const waitForProgress = async (id: string, ok: (p: PipelineProgress) => boolean, timeoutMs = 120_000) =>
  (await until(
    async () => {
      const res = await loraflow('status', id, '--json');
      return res.code === 0 ? json<PipelineProgress>(res.stdout) : undefined;
    },
    (p) => p !== undefined && ok(p),
    timeoutMs,
    500,
  ))!;

/** The first train job submitted after ledger position `since`, once it has reported `updates` progress
 * updates (phases first: download, load, caching; then training steps, about one a second). */
const trainingUnderway = async (since: number, updates = 3, timeoutMs = 180_000) =>
  (await until(() => stack.runpod.ledger().slice(since).find((e) => e.task === 'train' && e.status === 'IN_PROGRESS' && e.progressUpdates >= updates), Boolean, timeoutMs, 50))!;

describe('loraflow end to end', () => {
  it('trains, publishes, downloads a LoRA that loads into the pipeline and changes its output', async () => {
    const trained = await loraflow(...trainArgs('squares', 20), '--wait');
    expect(trained.code, trained.stderr).toBe(0);
    const result = json<{ workflowId: string; attached: boolean; published: PublishedLora }>(trained.stdout);
    expect(result.published.uri).toMatch(/^s3:\/\/loraflow\/loras\/squares\/.+\/lora\.safetensors$/);

    // The same request again attaches to the same pipeline instead of paying twice.
    const again = json<{ workflowId: string; attached: boolean }>((await loraflow(...trainArgs('squares', 20))).stdout);
    expect(again).toMatchObject({ workflowId: result.workflowId, attached: true });

    const status = json<PipelineProgress & { status: string }>((await loraflow('status', result.workflowId, '--json')).stdout);
    expect(status).toMatchObject({ status: 'COMPLETED', stage: 'published', result: { uri: result.published.uri } });
    expect((await loraflow('list')).stdout).toContain(result.workflowId);
    // The worker's Prometheus endpoint counts the run by outcome.
    const metrics = await (await fetch(`http://${stack.env.LORAFLOW_METRICS_ADDRESS}/metrics`)).text();
    expect(metrics).toMatch(/^loraflow_pipeline_runs_total\{[^}]*outcome="published"[^}]*\} 1$/m);
    expect(metrics.split('\n').find((l) => l.startsWith('loraflow_pipeline_runs_total{'))).toMatch(/lora="squares".*trigger="manual"|trigger="manual".*lora="squares"/);

    const out = path.join(tmp.dir, 'download');
    const downloaded = await loraflow('download', result.workflowId, '--out', out, '--json');
    expect(downloaded.code, downloaded.stderr).toBe(0);
    const verify = await run(toolchain.python(), [path.join(repoRoot, 'gpu-worker/verify_lora.py'), '--model', path.join(toolchain.modelDir(), 'tiny-sd'), '--lora', path.join(out, 'lora.safetensors')], {
      env: { ...process.env, HF_HUB_OFFLINE: '1' },
    });
    expect(json<{ loaded: boolean; changed: boolean }>(verify.stdout.trim().split('\n').pop()!)).toMatchObject({ loaded: true, changed: true });
  }, 300_000); // the stack's first pipeline: its GPU worker starts cold

  it('keeps the LoRA every N steps with samples for two prompts, reports a prompts × steps grid, and promote moves latest', async () => {
    const prompts = ['--sample-prompt', '[trigger], red', '--sample-prompt', 'a [trigger] on blue'];
    const trained = await loraflow(...trainArgs('steps', 6), '--sample-every', '3', '--save-every', '2', ...prompts, '--wait');
    expect(trained.code, trained.stderr).toBe(0);
    const { workflowId, published } = json<{ workflowId: string; published: PublishedLora }>(trained.stdout);
    const storage = makeStorage(stack.config);
    const meta = await getJson<LoraMetadata>(storage, keyOfUri(published.metadataUri));
    expect(meta.prompts).toEqual(['lfsquare, red', 'a lfsquare on blue']);
    expect(meta.samples.map((s) => [s.step, s.prompt ?? 0])).toEqual([[3, 0], [3, 1], [6, 0], [6, 1]]);
    expect(meta.savedSteps!.map((s) => s.uri.replace(/^.*\//, ''))).toEqual(['lora-step2.safetensors', 'lora-step4.safetensors']);
    const files = [];
    for (const saved of meta.savedSteps!) {
      files.push(path.join(tmp.dir, `steps-${saved.step}.safetensors`));
      await writeFile(files.at(-1)!, await getBytes(storage, keyOfUri(saved.uri)));
    }
    // Each kept LoRA loads into the pipeline and changes its output (one pipeline load for both).
    const verify = await run(toolchain.python(), [path.join(repoRoot, 'gpu-worker/verify_lora.py'), '--model', path.join(toolchain.modelDir(), 'tiny-sd'), ...files.flatMap((f) => ['--lora', f])], { env: { ...process.env, HF_HUB_OFFLINE: '1' } });
    expect(verify.stdout.trim().split('\n').slice(-2).map((line) => json<{ loaded: boolean; changed: boolean }>(line))).toEqual([1, 2].map(() => expect.objectContaining({ loaded: true, changed: true })));

    const out = path.join(tmp.dir, 'steps-report');
    expect((await loraflow('report', workflowId, '--out', out, '--json')).code).toBe(0);
    // Rows: the two prompts; columns: steps 3 and 6 (a label column and a header row around them).
    expect(await sharp(path.join(out, 'samples.png')).metadata()).toMatchObject({ width: 200 + 2 * 160, height: 28 + 2 * 160 });
    expect(await readFile(path.join(out, 'index.html'), 'utf8')).toContain(`loraflow promote steps@${published.version} --step N`);

    const promoted = await loraflow('promote', `steps@${published.version}`, '--step', '4', '--json');
    expect(promoted.code, promoted.stderr).toBe(0);
    const latest = await getJson<LatestPublished>(storage, 'loras/steps/latest.json');
    expect(latest).toMatchObject({ version: published.version, step: 4 });
    expect((await sha256OfObject(storage, keyOfUri(published.uri)))!.sha256).toBe(meta.savedSteps![1]!.sha256);
    // The final LoRA stays available, and metadata.json says which step is the version's LoRA.
    expect((await sha256OfObject(storage, `loras/steps/${published.version}/lora-step6.safetensors`))!.sha256).toBe(published.sha256);
    expect(await getJson<LoraMetadata>(storage, keyOfUri(published.metadataUri))).toMatchObject({ lora: { sha256: meta.savedSteps![1]!.sha256 }, promoted: { step: 4, final: { step: 6, sha256: published.sha256 } } });
  }, 600_000); // the stack's first pipeline when run alone: its GPU worker starts cold

  it('survives kill -9 of the Temporal worker mid-training with exactly one GPU job', async () => {
    const since = stack.runpod.ledger().length;
    const started = json<{ workflowId: string }>((await loraflow(...trainArgs('durable', 150))).stdout);
    const before = await trainingUnderway(since);
    stack.worker!.child.kill('SIGKILL');
    await new Promise((r) => stack.worker!.child.once('exit', r));
    await stack.startWorker();

    const finished = await loraflow('status', started.workflowId, '--json');
    expect(finished.code).toBe(0);
    const done = await waitForProgress(started.workflowId, (p) => p.stage === 'published' || p.stage === 'failed', 240_000);
    expect(done.stage).toBe('published');
    // One training submitted for this pipeline: the one running before the kill.
    const after = json<PipelineProgress>((await loraflow('status', started.workflowId, '--json')).stdout);
    expect(after.result?.uri).toContain('/loras/durable/');
    expect(stack.runpod.ledger().slice(since).filter((e) => e.task === 'train').map((e) => [e.id, e.status])).toEqual([[before.id, 'COMPLETED']]);
  }, 360_000);

  it('a GPU worker killed mid-caption: the endpoint retries the job, the real worker meets its own claim, and the pipeline publishes once', async () => {
    const uncaptioned = await makeDataset(path.join(tmp.dir, 'uncaptioned'), { images: 3, captioned: 0, size: 40 });
    const before = stack.runpod.ledger().length;
    const started = json<{ workflowId: string }>((await loraflow('train', '--name', 'crashy', '--images', uncaptioned, '--trigger', 'lfcrash', '--steps', '5', '--json')).stdout);
    // Kill the worker as soon as it has taken the caption job (it is still loading the captioner).
    const busy = await until(
      () => (stack.runpod.ledger().slice(before).some((e) => e.task === 'caption' && e.takenAt) ? stack.runpod.workers().find((w) => w.state === 'running') : undefined),
      Boolean,
      60_000,
      20,
    );
    process.kill(busy!.pid!, 'SIGKILL');
    const done = await waitForProgress(started.workflowId, (q) => q.stage === 'failed' || q.stage === 'published', 180_000);
    expect(done.stage, done.error).toBe('published');
    const captions = stack.runpod.ledger().slice(before).filter((e) => e.task === 'caption');
    expect(captions).toHaveLength(1); // one job, started twice: no second caption job was paid for
    expect(captions[0]!.attempts.map((a) => a.outcome)).toEqual([expect.stringMatching(/^requeued: worker w-\d+ exited with signal SIGKILL/), 'COMPLETED']);
    expect(await listKeys(makeStorage(stack.config), 'loras/crashy/')).toEqual(expect.arrayContaining([expect.stringMatching(/lora\.safetensors$/)]));
  });

  it('keeps presigned URLs and secrets out of every log', async () => {
    const logs = (await readdir(stack.logDir)).filter((f) => f.endsWith('.log'));
    expect(logs).toEqual(expect.arrayContaining(['runpod.log', 'worker.log', 'temporal.log']));
    for (const file of logs) {
      const text = await readFile(path.join(stack.logDir, file), 'utf8');
      for (const secret of ['X-Amz-Signature', 'X-Amz-Credential', stack.config.AWS_SECRET_ACCESS_KEY, stack.config.RUNPOD_API_KEY]) {
        expect(text.includes(secret), `${secret} in ${file}`).toBe(false);
      }
    }
    expect(await readFile(path.join(stack.logDir, 'runpod.log'), 'utf8')).toContain('job COMPLETED');
  });

  it('tells the user when the stack is not running', async () => {
    const port = await freePort();
    const res = await run(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'client.ts'), 'list'], {
      env: { ...process.env, TEMPORAL_ADDRESS: `127.0.0.1:${port}` },
      cwd: repoRoot,
    }).catch((e: { code: number; stderr: string }) => e);
    expect('code' in res && res.code).toBe(1);
    expect((res as { stderr: string }).stderr).toContain(`cannot reach Temporal at 127.0.0.1:${port}: is the stack running?`);
  });
});
