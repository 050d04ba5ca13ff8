// Scheduled retraining on the real Temporal dev server (Temporal Schedules), with the real
// activities, real S3 (versitygw) and the local RunPod endpoint running the scripted handler:
// a run retrains only when the dataset changed since the last published version, records the skip
// otherwise, and reuses cached captions instead of paying for a caption job again.
import { execFile } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSkipped, type PublishedLora, type TrainOutcome } from '../contract/pipeline.js';
import { CliError } from '../cli/connect.js';
import {
  backfillSchedule,
  createSchedule,
  deleteSchedule,
  describeSchedule,
  listSchedules,
  pauseSchedule,
  triggerSchedule,
  unpauseSchedule,
} from '../cli/schedule.js';
import { buildRequest } from '../cli/train.js';
import type { Config } from '../lib/config.js';
import { captionCacheKey, keyOfUri, latestKey } from '../lib/keys.js';
import { getBytes, getJson, listKeys } from '../lib/s3.js';
import { repoRoot } from '../lib/toolchain.js';
import { LoraStageKey } from '../workflows/definitions.js';
import { makeDataset } from '../testkit/datasets.js';
import { recordHistory } from '../testkit/histories.js';
import { type PipelineFixture, startPipelineFixture, testConfig } from '../testkit/services.js';
import { until } from '../testkit/wait.js';

let f: PipelineFixture;
let config: Config;
let dataset: string;
let metricsUrl: string;
const NAME = 'sched-robot';
const ID = `retrain-${NAME}`;

beforeAll(async () => {
  // Served by test/setup/runtime.ts, as worker.ts serves it with LORAFLOW_METRICS_ADDRESS.
  metricsUrl = process.env.LORAFLOW_TEST_METRICS_URL!;
  f = await startPipelineFixture('sched');
  // The scripted handler answers caption jobs as captioner "scripted".
  await f.serve('sched-test', { config: { LORAFLOW_CAPTIONER: 'scripted' } });
  dataset = await makeDataset(path.join(f.tmp.dir, 'dataset'), { images: 3, captioned: 2 });
  config = { ...testConfig, LORAFLOW_TASK_QUEUE: 'sched-test', TEMPORAL_ADDRESS: f.env.address };
});

afterAll(() => f?.stop());

/** The value of loraflow_pipeline_runs_total for this LoRA's scheduled runs with `outcome`. */
async function scheduledRuns(outcome: string): Promise<number> {
  const text = await (await fetch(metricsUrl)).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith('loraflow_pipeline_runs_total{') && l.includes(`outcome="${outcome}"`) && l.includes('trigger="scheduled"') && l.includes(`lora="${NAME}"`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

const jobs = (task: string) => f.gpu.endpoint.ledger().filter((e) => e.task === task).length;

/** Runs `act` (trigger, backfill) and waits for the run it starts to finish. */
async function nextRun(act: () => Promise<void>): Promise<{ workflowId: string; outcome: TrainOutcome }> {
  const handle = f.env.client.schedule.getHandle(ID);
  const before = (await handle.describe()).info.numActionsTaken;
  await act();
  const d = await until(() => handle.describe(), (d) => d.info.numActionsTaken > before, 60_000, 200);
  const { workflowId, firstExecutionRunId } = d.info.recentActions.at(-1)!.action.workflow;
  const run = f.env.client.workflow.getHandle(workflowId, firstExecutionRunId);
  const outcome = (await run.result()) as TrainOutcome;
  if (isSkipped(outcome)) await recordHistory(run, 'skipped');
  return { workflowId, outcome };
}

async function loraflow(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(path.join(repoRoot, 'bin/loraflow.js'), args, {
      cwd: repoRoot,
      env: { ...process.env, TEMPORAL_ADDRESS: f.env.address, LORAFLOW_TASK_QUEUE: config.LORAFLOW_TASK_QUEUE },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('scheduled retraining', () => {
  it('creates a schedule that shows its cron, state and next run', async () => {
    const request = await buildRequest({ name: NAME, images: dataset, training: { triggerWord: 'lfsched', baseModel: 'tiny-sd', params: { steps: 3, seed: 10 } } }, config);
    expect(await createSchedule(f.env.client, config, request, { cron: '0 0 1 1 *', overlap: 'skip' })).toEqual({ scheduleId: ID });
    await expect(createSchedule(f.env.client, config, request, { cron: '0 0 1 1 *' })).rejects.toThrow(CliError);
    const row = await describeSchedule(f.env.client, ID);
    expect(row).toMatchObject({ scheduleId: ID, name: NAME, cron: '0 0 1 1 *', state: 'active', dataset, recentRuns: [] });
    expect(row.nextRuns[0]).toMatch(/^\d{4}-01-01T00:00:00/);
    // Scheduled runs queue for GPU slots behind manual runs (priority 3) unless told otherwise.
    const described = await f.env.client.schedule.getHandle(ID).describe();
    expect((described.action as { priority?: { priorityKey?: number } }).priority?.priorityKey).toBe(4);
  });

  it('trains once for a dataset, records a skip when it is unchanged, and trains again when it changes', async () => {
    const [trainsBefore, captionsBefore] = [jobs('train'), jobs('caption')];

    const first = await nextRun(() => triggerSchedule(f.env.client, ID));
    expect(isSkipped(first.outcome)).toBe(false);
    const published = first.outcome as PublishedLora;
    expect(published.uri).toContain(`/loras/${NAME}/`);
    const latest = await getJson<{ version: string; manifestSha256: string }>(f.s3.storage, latestKey(NAME));
    expect(latest.version).toBe(published.version);
    expect(jobs('caption') - captionsBefore).toBe(1); // the image without a sidecar caption

    const second = await nextRun(() => triggerSchedule(f.env.client, ID));
    expect(second.outcome).toEqual({ skipped: true, reason: 'dataset unchanged', manifestSha256: latest.manifestSha256, latestVersion: published.version, latestUri: published.uri });
    expect((await f.env.client.workflow.getHandle(second.workflowId).describe()).typedSearchAttributes.get(LoraStageKey)).toBe('skipped');
    expect(jobs('train') - trainsBefore).toBe(1);
    expect((await listKeys(f.s3.storage, `loras/${NAME}/`)).filter((k) => k.endsWith('lora.safetensors'))).toHaveLength(1);

    const rows = await listSchedules(f.env.client);
    expect(rows.map((r) => r.scheduleId)).toEqual([ID]);
    expect(rows[0]!.recentRuns.map((r) => [r.workflowId, r.outcome])).toEqual([
      [second.workflowId, 'skipped: dataset unchanged'],
      [first.workflowId, 'published'],
    ]);

    // A new image with a sidecar caption changes the dataset. The image the GPU captioned in the
    // first run is found in the caption cache: no caption job is paid for again.
    const extra = await makeDataset(path.join(f.tmp.dir, 'extra'), { images: 4, captioned: 4 });
    for (const file of ['img-3.png', 'img-3.txt']) copyFileSync(path.join(extra, file), path.join(dataset, file));
    const captionsBeforeThird = jobs('caption');
    const third = await nextRun(() => triggerSchedule(f.env.client, ID));
    const republished = third.outcome as PublishedLora;
    expect(isSkipped(third.outcome)).toBe(false);
    expect(republished.version).not.toBe(published.version);
    expect(jobs('caption')).toBe(captionsBeforeThird);
    expect(jobs('train') - trainsBefore).toBe(2);
    const metadata = await getJson<{ dataset: { images: number; captions: { sidecar: number; gpuCaptioned: number; cached: number } } }>(f.s3.storage, keyOfUri(republished.metadataUri));
    expect(metadata.dataset).toMatchObject({ images: 4, captions: { sidecar: 3, gpuCaptioned: 0, cached: 1 } });
    const cached = (await listKeys(f.s3.storage, 'captions/scripted/'));
    expect(cached).toHaveLength(1);
    // Cached without the trigger word, so another trigger word can reuse it.
    expect((await getBytes(f.s3.storage, cached[0]!)).toString()).toBe('scripted caption');
    expect(cached[0]).toBe(captionCacheKey('scripted', cached[0]!.split('/').at(-1)!.replace('.txt', '')));
    expect((await getJson<{ version: string }>(f.s3.storage, latestKey(NAME))).version).toBe(republished.version);
  });

  it('backfills the runs a time range would have taken', async () => {
    // One cron time (1 January 00:00 UTC) in the range; the dataset is unchanged since the last run.
    const run = await nextRun(() => backfillSchedule(f.env.client, ID, new Date('2025-12-31T23:30:00Z'), new Date('2026-01-01T00:30:00Z')));
    expect(isSkipped(run.outcome)).toBe(true);
    await expect(backfillSchedule(f.env.client, ID, new Date('2026-01-02T00:00:00Z'), new Date('2026-01-01T00:00:00Z'))).rejects.toThrow('--from must be before --to');
  });

  it('counts scheduled runs by outcome on the worker metrics endpoint, so a skip is never silent', async () => {
    // Published twice (first and changed dataset), skipped twice (unchanged, and the backfill).
    expect(await scheduledRuns('published')).toBe(2);
    expect(await scheduledRuns('skipped')).toBe(2);
    expect(await scheduledRuns('failed')).toBe(0);
  });

  it('pauses, unpauses and deletes through the CLI', async () => {
    expect(await loraflow('schedule', 'pause', ID)).toMatchObject({ code: 0, stdout: `${ID}: paused\n` });
    expect((await describeSchedule(f.env.client, ID)).state).toBe('paused');
    const listed = await loraflow('schedule', 'list', '--json');
    expect(listed.code, listed.stderr).toBe(0);
    const rows = JSON.parse(listed.stdout) as { scheduleId: string; state: string; recentRuns: { outcome: string }[] }[];
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ scheduleId: ID, state: 'paused' });
    expect(rows[0]!.recentRuns.map((r) => r.outcome)).toEqual(['skipped: dataset unchanged', 'published', 'skipped: dataset unchanged', 'published']);
    expect((await loraflow('schedule', 'list')).stdout).toContain('skipped: dataset unchanged');

    await unpauseSchedule(f.env.client, ID);
    expect((await describeSchedule(f.env.client, ID)).state).toBe('active');
    await pauseSchedule(f.env.client, ID);
    await unpauseSchedule(f.env.client, ID);

    expect(await loraflow('schedule', 'delete', ID, '--json')).toMatchObject({ code: 0 });
    expect(await listSchedules(f.env.client)).toEqual([]);
    expect(await loraflow('schedule', 'trigger', ID)).toMatchObject({ code: 1, stderr: expect.stringContaining(`loraflow: no schedule with id ${ID}`) });
    await expect(deleteSchedule(f.env.client, ID)).rejects.toThrow(CliError);
  });
});
