// The pipeline as a story: ingest → caption → train → publish, then the report and the optional
// Hub push. Deterministic code only; every side effect is an activity, and history holds keys, ids
// and hashes, never bytes or URLs. Changes to this file ship as a new Worker Deployment version
// (docs/operations.md), and test/histories/ must still replay.
import {
  CancellationScope,
  CancelledFailure,
  condition,
  isCancellation,
  log,
  metricMeter,
  proxyActivities,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { describeState } from '../contract/describe.js';
import type { CaptionResult, IngestResult, PipelineProgress, PublishedLora, SkippedRun, Stage, TrainOutcome, TrainRequest } from '../contract/pipeline.js';
import { keyOfUri, runKeyOf } from '../lib/keys.js';
import { cancelGpuJobs, gpuStages } from './gpu-activities.js';
import { continueUpdate, gpuProgressSignal, LoraBaseModelKey, LoraDatasetHashKey, LoraNameKey, LoraStageKey, progressQuery } from './definitions.js';

const { ingestDataset } = proxyActivities<Activities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '1 minute',
  // Storage or network trouble is retried for minutes; a bad dataset is not retried at all.
  retry: { maximumAttempts: 12, maximumInterval: '30 seconds', nonRetryableErrorTypes: ['InvalidDataset', 'InvalidInput'] },
});

const { publishLora, latestPublished, resolveInitFrom } = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  retry: { maximumAttempts: 12, maximumInterval: '30 seconds', nonRetryableErrorTypes: ['ArtifactNotVerified'] },
});

// The report is a convenience: a few tries, then the pipeline ends published without it.
const { writeReport } = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  retry: { maximumAttempts: 3, initialInterval: '2 seconds' },
});

// The optional Hugging Face push (where the worker has HF_TOKEN): the LoRA is already published in
// S3, so a Hub that stays down or refuses the token is recorded on the result, not a failed run.
const { pushToHub } = proxyActivities<Activities>({
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '2 minutes',
  retry: { maximumAttempts: 5, initialInterval: '10 seconds', maximumInterval: '2 minutes' },
});

/** trainLora as runs without `onlyIfChanged` (CLI, tests) see it: they publish or fail, never skip. */
export type PublishingTrainLora = (request: TrainRequest) => Promise<PublishedLora>;

/** Publishes a LoRA; a scheduled run (`onlyIfChanged`) whose dataset is unchanged ends `skipped`. */
export async function trainLora(request: TrainRequest): Promise<TrainOutcome> {
  // Claims, job records and staged files belong to this run: a retried, reset or resubmitted
  // request is a new run (checkpoints are shared by the training's fingerprint instead).
  const runKey = runKeyOf(workflowInfo().workflowId, workflowInfo().runId);
  const { captionDataset, trainOnGpu } = gpuStages('24 hours');
  const progress = trackProgress(request);

  try {
    // The version this training starts from, checked (base model, rank, layout) before any GPU time.
    const from = request.initFrom ? await resolveInitFrom({ name: request.name, initFrom: request.initFrom, training: request.training }) : undefined;
    let dataset: IngestResult;
    let captions: CaptionResult;
    if (from?.dataset && from.captions) {
      // loraflow extend: the parent's own images and captions, so its checkpoint fits.
      ({ dataset, captions } = from);
      upsertSearchAttributes([{ key: LoraDatasetHashKey, value: dataset.manifestSha256 }]);
    } else {
      progress.enter('ingest');
      dataset = await ingestDataset({ dataset: request.dataset });
      upsertSearchAttributes([{ key: LoraDatasetHashKey, value: dataset.manifestSha256 }]);

      // Scheduled retraining: no new version when the latest one was trained on this same dataset.
      if (request.onlyIfChanged) {
        const { latest } = await latestPublished({ name: request.name });
        if (latest && latest.manifestSha256 === dataset.manifestSha256) {
          const skipped: SkippedRun = { skipped: true, reason: 'dataset unchanged', manifestSha256: dataset.manifestSha256, latestVersion: latest.version, latestUri: latest.uri };
          log.info('skipped: dataset unchanged since the latest published version', { name: request.name, latestVersion: latest.version, manifestSha256: dataset.manifestSha256 });
          progress.state.skipped = skipped;
          return progress.finish('skipped', skipped);
        }
      }

      progress.enter('caption');
      captions = await captionDataset({ runKey, manifestKey: dataset.manifestKey, triggerWord: request.training.triggerWord, budget: request.budget, gpu: request.gpu, ...(request.captions ? { settings: request.captions } : {}) });
      // The user edits the stored captions (`loraflow captions pull/push`); no GPU slot is held meanwhile.
      if (request.captions?.review) await progress.awaitReview({ manifestKey: dataset.manifestKey, captionsKey: captions.captionsKey, triggerWord: request.training.triggerWord });
    }

    progress.enter('train');
    const trained = await trainOnGpu({ runKey, manifestKey: dataset.manifestKey, captionsKey: captions.captionsKey, training: request.training, budget: request.budget, gpu: request.gpu, ...(from?.weights ? { initFrom: from.weights } : {}) });

    progress.enter('publish');
    let published = await publishLora({ request, version: versionOf(workflowInfo().startTime, workflowInfo().runId), dataset, captions, trained, ...(from?.parent ? { initFrom: from.parent } : {}) });
    const metadataKey = keyOfUri(published.metadataUri);

    // The run's report (loss, samples, parameters, dataset, cost) next to the LoRA.
    const report = await optional('report not written', () => writeReport({ metadataKey, manifestKey: dataset.manifestKey }));
    if (report.ok) published = { ...published, reportUri: report.value.reportUri };

    const hub = await optional('not pushed to the Hugging Face Hub', () => pushToHub({ metadataKey }));
    if (!hub.ok) published = { ...published, hub: { outcome: 'failed', error: hub.error } };
    else if (hub.value.outcome !== 'not-configured') published = { ...published, hub: { ...hub.value, outcome: hub.value.outcome } };

    progress.state.result = published;
    return progress.finish('published', published);
  } catch (err) {
    // A cancel can surface as the failure of an activity that could not finish cancelling
    // (its worker died): the pipeline was still cancelled.
    const cancelled = isCancellation(err) || CancellationScope.current().consideredCancelled;
    progress.state.error = messageOf(err);
    progress.finish(cancelled ? 'cancelled' : 'failed');
    if (request.onlyIfChanged) log.warn(`scheduled run ${cancelled ? 'cancelled' : 'failed'}`, { name: request.name, error: progress.state.error });
    // Whatever failed, no GPU job of this pipeline may keep billing.
    await CancellationScope.nonCancellable(() => cancelGpuJobs({ runKey })).catch(() => undefined);
    if (cancelled && !isCancellation(err)) throw new CancelledFailure('pipeline cancelled', [], err instanceof Error ? err : undefined);
    throw err;
  }
}

/**
 * The run's progress: answered by the `progress` query, fed by GPU stages' signals, mirrored in
 * the LoraStage search attribute and in a one-line memo summary for the Web UI (written when the
 * line changes, not on every step).
 */
function trackProgress(request: TrainRequest) {
  const state: PipelineProgress = { stage: 'queued', name: request.name, stageStartedAt: {}, updatedAt: new Date().toISOString() };
  let summary = '';
  const updateMemo = () => {
    const line = `${request.name}: ${describeState(state)}`;
    if (line === summary) return;
    summary = line;
    upsertMemo({ summary: line });
  };
  setHandler(progressQuery, () => state);
  setHandler(gpuProgressSignal, (gpu) => {
    const { gpuState, gpuDetail } = state;
    Object.assign(state, { gpuJobId: undefined, gpuDetail: undefined }, gpu, { updatedAt: new Date().toISOString() });
    if (gpu.gpuState !== undefined && (gpu.gpuState !== gpuState || gpu.gpuDetail !== gpuDetail)) updateMemo();
  });
  upsertSearchAttributes([
    { key: LoraNameKey, value: request.name },
    { key: LoraBaseModelKey, value: request.training.baseModel },
  ]);

  const enter = (stage: Stage) => {
    const now = new Date().toISOString();
    Object.assign(state, { stage, updatedAt: now, gpuJobId: undefined, gpuStatus: undefined, gpuState: undefined, gpuDetail: undefined, phase: undefined, step: undefined, totalSteps: undefined, loss: undefined });
    state.stageStartedAt[stage] = now;
    upsertSearchAttributes([{ key: LoraStageKey, value: stage }]);
    updateMemo();
  };
  // Waits as long as it takes: a run left waiting is still there, and `loraflow status` says so.
  let continued = false;
  setHandler(continueUpdate, () => void (continued = true), {
    validator: () => {
      if (state.stage !== 'awaiting-captions') throw new Error(`the run is not awaiting caption review (stage: ${state.stage})`);
    },
  });
  const awaitReview = async (review: NonNullable<PipelineProgress['captionReview']>) => {
    state.captionReview = review;
    enter('awaiting-captions');
    await condition(() => continued);
    state.captionReview = undefined;
  };
  /** Enters a final stage and counts the run; returns `outcome` for the caller to return. */
  const finish = <T>(stage: 'published' | 'skipped' | 'failed' | 'cancelled', outcome?: T): T => {
    enter(stage);
    countRun(request, stage);
    return outcome as T;
  };
  return { state, enter, finish, awaitReview };
}

/** An optional step: its failure is logged and returned, not thrown (a cancel still is). */
async function optional<T>(what: string, step: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: string }> {
  try {
    return { ok: true, value: await step() };
  } catch (err) {
    if (isCancellation(err)) throw err;
    const error = messageOf(err);
    log.warn(what, { error });
    return { ok: false, error };
  }
}

/** The most specific message: an activity's failure carries the real one as its cause. */
const messageOf = (err: unknown) => (err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err));

/**
 * loraflow_pipeline_runs_total{outcome, trigger, lora} on the worker's /metrics: a skipped or
 * failed scheduled run shows up on a dashboard, not only in its history. (Not emitted on replay.)
 */
function countRun(request: TrainRequest, outcome: 'published' | 'skipped' | 'failed' | 'cancelled'): void {
  metricMeter
    .createCounter('loraflow_pipeline_runs', 'runs', 'Finished trainLora runs by outcome and trigger')
    .add(1, { outcome, trigger: request.onlyIfChanged ? 'scheduled' : 'manual', lora: request.name });
}

/** Sortable and unique per run: 20261125-093012-1a2b3c4d. */
function versionOf(start: Date, runId: string): string {
  const stamp = start.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${stamp}-${runId.slice(0, 8)}`;
}
