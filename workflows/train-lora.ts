// The pipeline as a story: ingest → caption → train → publish. Deterministic code only;
// every side effect is an activity, and history holds keys, ids and hashes, never bytes or URLs.
import {
  type ActivityOptions,
  ActivityCancellationType,
  CancellationScope,
  CancelledFailure,
  isCancellation,
  log,
  metricMeter,
  patched,
  proxyActivities,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { describeState } from '../contract/describe.js';
import type { PipelineProgress, PublishedLora, SkippedRun, Stage, TrainOutcome, TrainRequest } from '../contract/pipeline.js';
import { gpuProgressSignal, gpuTaskQueue, LoraBaseModelKey, LoraDatasetHashKey, LoraNameKey, LoraStageKey, progressQuery } from './definitions.js';

const { ingestDataset } = proxyActivities<Activities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '1 minute',
  // Storage or network trouble is retried for minutes; a bad dataset is not retried at all.
  retry: { maximumAttempts: 12, maximumInterval: '30 seconds', nonRetryableErrorTypes: ['InvalidDataset', 'InvalidInput'] },
});

// GPU stages: retries resume polling the recorded RunPod job, they never submit a second one.
// WAIT_CANCELLATION_COMPLETED: a cancelled pipeline waits until the GPU job is cancelled too.
// They run on the GPU task queue (see gpuProxies), whose slots cap concurrent GPU jobs.
const GPU_STAGES: ActivityOptions = {
  startToCloseTimeout: '24 hours',
  heartbeatTimeout: '30 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 20 },
};
// captionDataset and trainOnGpu (GPU_STAGE_ACTIVITIES, which `loraflow status` reads) come from here.
const gpuProxies = () => proxyActivities<Activities>({ ...GPU_STAGES, taskQueue: gpuTaskQueue(workflowInfo().taskQueue) });

// Cleanup after a failure or cancel: cancels GPU jobs the pipeline's activities could not stop.
const { cancelGpuJobs } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  retry: { maximumAttempts: 10, maximumInterval: '30 seconds' },
});

const { publishLora, latestPublished } = proxyActivities<Activities>({
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
  const runKey = workflowInfo().workflowId;
  const { captionDataset, trainOnGpu } = gpuProxies();
  const progress: PipelineProgress = { stage: 'queued', name: request.name, stageStartedAt: {}, updatedAt: new Date().toISOString() };
  setHandler(progressQuery, () => progress);
  // A one-line summary for the Web UI's memo column, written when it changes (stage, GPU state),
  // not on every step. Histories from before it replay without it.
  let summary = '';
  const updateMemo = () => {
    const line = `${request.name}: ${describeState(progress)}`;
    if (line === summary || !patched('memo-summary')) return;
    summary = line;
    upsertMemo({ summary: line });
  };
  setHandler(gpuProgressSignal, (gpu) => {
    const { gpuState, gpuDetail } = progress;
    Object.assign(progress, { gpuJobId: undefined, gpuDetail: undefined }, gpu, { updatedAt: new Date().toISOString() });
    if (gpu.gpuState !== undefined && (gpu.gpuState !== gpuState || gpu.gpuDetail !== gpuDetail)) updateMemo();
  });
  upsertSearchAttributes([{ key: LoraNameKey, value: request.name }]);
  // Base model and dataset hash make runs comparable in the Web UI; older histories lack them.
  const moreSearchAttributes = patched('search-attrs-model-dataset');
  if (moreSearchAttributes) upsertSearchAttributes([{ key: LoraBaseModelKey, value: request.baseModel }]);

  const enter = (stage: Stage) => {
    const now = new Date().toISOString();
    Object.assign(progress, { stage, updatedAt: now, gpuJobId: undefined, gpuStatus: undefined, gpuState: undefined, gpuDetail: undefined, phase: undefined, step: undefined, totalSteps: undefined, loss: undefined });
    progress.stageStartedAt[stage] = now;
    upsertSearchAttributes([{ key: LoraStageKey, value: stage }]);
    updateMemo();
  };

  try {
    enter('ingest');
    const dataset = await ingestDataset({ dataset: request.dataset });
    if (moreSearchAttributes) upsertSearchAttributes([{ key: LoraDatasetHashKey, value: dataset.manifestSha256 }]);

    // Scheduled retraining: no new version when the latest one was trained on this same dataset.
    if (request.onlyIfChanged && patched('only-if-changed')) {
      const { latest } = await latestPublished({ name: request.name });
      if (latest && latest.manifestSha256 === dataset.manifestSha256) {
        const skipped: SkippedRun = { skipped: true, reason: 'dataset unchanged', manifestSha256: dataset.manifestSha256, latestVersion: latest.version, latestUri: latest.uri };
        log.info('skipped: dataset unchanged since the latest published version', { name: request.name, latestVersion: latest.version, manifestSha256: dataset.manifestSha256 });
        progress.skipped = skipped;
        enter('skipped');
        countRun(request, 'skipped');
        return skipped;
      }
    }

    enter('caption');
    const captions = await captionDataset({ runKey, manifestKey: dataset.manifestKey, triggerWord: request.triggerWord, budget: request.budget });

    enter('train');
    const trained = await trainOnGpu({
      runKey,
      manifestKey: dataset.manifestKey,
      captionsKey: captions.captionsKey,
      triggerWord: request.triggerWord,
      baseModel: request.baseModel,
      params: request.params,
      format: request.format,
      sampleEvery: request.sampleEvery,
      budget: request.budget,
    });

    enter('publish');
    let published = await publishLora({
      request,
      version: versionOf(workflowInfo().startTime, workflowInfo().runId),
      dataset,
      captions,
      trained,
    });

    // The run's report (loss, samples, parameters, dataset, cost) next to the LoRA. The LoRA is
    // published either way: a report that cannot be written is logged, not a failed pipeline.
    if (patched('run-report')) {
      try {
        const report = await writeReport({ metadataKey: keyOf(published.metadataUri), manifestKey: dataset.manifestKey });
        published = { ...published, reportUri: report.reportUri };
      } catch (err) {
        if (isCancellation(err)) throw err;
        log.warn('report not written', { error: err instanceof Error ? err.message : String(err) });
      }
    }

    if (patched('hub-push')) {
      try {
        const hub = await pushToHub({ metadataKey: keyOf(published.metadataUri) });
        if (hub.outcome !== 'not-configured') published = { ...published, hub: { ...hub, outcome: hub.outcome } };
      } catch (err) {
        if (isCancellation(err)) throw err;
        const error = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
        log.warn('not pushed to the Hugging Face Hub', { error });
        published = { ...published, hub: { outcome: 'failed', error } };
      }
    }

    progress.result = published;
    enter('published');
    countRun(request, 'published');
    return published;
  } catch (err) {
    // A cancel can surface as the failure of an activity that could not finish cancelling
    // (its worker died): the pipeline was still cancelled.
    const cancelled = isCancellation(err) || CancellationScope.current().consideredCancelled;
    progress.error = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    enter(cancelled ? 'cancelled' : 'failed');
    countRun(request, cancelled ? 'cancelled' : 'failed');
    if (request.onlyIfChanged) log.warn(`scheduled run ${cancelled ? 'cancelled' : 'failed'}`, { name: request.name, error: progress.error });
    if (patched('cancel-gpu-jobs-on-failure')) {
      // Whatever failed, no GPU job of this pipeline may keep billing.
      await CancellationScope.nonCancellable(() => cancelGpuJobs({ runKey })).catch(() => undefined);
    }
    if (cancelled && !isCancellation(err)) throw new CancelledFailure('pipeline cancelled', [], err instanceof Error ? err : undefined);
    throw err;
  }
}

/**
 * loraflow_pipeline_runs_total{outcome, trigger, lora} on the worker's /metrics: a skipped or
 * failed scheduled run shows up on a dashboard, not only in its history. (Not emitted on replay.)
 */
function countRun(request: TrainRequest, outcome: 'published' | 'skipped' | 'failed' | 'cancelled'): void {
  metricMeter
    .createCounter('loraflow_pipeline_runs', 'runs', 'Finished trainLora runs by outcome and trigger')
    .add(1, { outcome, trigger: request.onlyIfChanged ? 'scheduled' : 'manual', lora: request.name });
}

/** s3://bucket/key → key */
const keyOf = (uri: string) => uri.replace(/^s3:\/\/[^/]+\//, '');

/** Sortable and unique per run: 20261125-093012-1a2b3c4d. */
function versionOf(start: Date, runId: string): string {
  const stamp = start.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${stamp}-${runId.slice(0, 8)}`;
}
