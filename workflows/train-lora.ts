// The pipeline as a story: ingest → caption → train → publish. Deterministic code only;
// every side effect is an activity, and history holds keys, ids and hashes, never bytes or URLs.
import {
  ActivityCancellationType,
  isCancellation,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { PipelineProgress, PublishedLora, Stage, TrainRequest } from '../contract/pipeline.js';
import { gpuProgressSignal, LoraNameKey, LoraStageKey, progressQuery } from './definitions.js';

const { ingestDataset } = proxyActivities<Activities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '1 minute',
  retry: { maximumAttempts: 3, nonRetryableErrorTypes: ['InvalidDataset', 'InvalidInput'] },
});

// GPU stages: retries resume polling the recorded RunPod job, they never submit a second one.
// WAIT_CANCELLATION_COMPLETED: a cancelled pipeline waits until the GPU job is cancelled too.
const { captionDataset, trainOnGpu } = proxyActivities<Activities>({
  startToCloseTimeout: '24 hours',
  heartbeatTimeout: '30 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 20 },
});

const { publishLora } = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: ['ArtifactNotVerified'] },
});

export async function trainLora(request: TrainRequest): Promise<PublishedLora> {
  const runKey = workflowInfo().workflowId;
  const progress: PipelineProgress = { stage: 'queued', name: request.name, stageStartedAt: {}, updatedAt: new Date().toISOString() };
  setHandler(progressQuery, () => progress);
  setHandler(gpuProgressSignal, (gpu) => {
    Object.assign(progress, gpu, { updatedAt: new Date().toISOString() });
  });
  upsertSearchAttributes([{ key: LoraNameKey, value: request.name }]);

  const enter = (stage: Stage) => {
    const now = new Date().toISOString();
    Object.assign(progress, { stage, updatedAt: now, gpuJobId: undefined, gpuStatus: undefined, phase: undefined, step: undefined, totalSteps: undefined, loss: undefined });
    progress.stageStartedAt[stage] = now;
    upsertSearchAttributes([{ key: LoraStageKey, value: stage }]);
  };

  try {
    enter('ingest');
    const dataset = await ingestDataset({ dataset: request.dataset });

    enter('caption');
    const captions = await captionDataset({ runKey, manifestKey: dataset.manifestKey, triggerWord: request.triggerWord });

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
    });

    enter('publish');
    const published = await publishLora({
      request,
      version: versionOf(workflowInfo().startTime, workflowInfo().runId),
      dataset,
      captions,
      trained,
    });

    enter('published');
    progress.result = published;
    return published;
  } catch (err) {
    enter(isCancellation(err) ? 'cancelled' : 'failed');
    progress.error = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    throw err;
  }
}

/** Sortable and unique per run: 20261125-093012-1a2b3c4d. */
function versionOf(start: Date, runId: string): string {
  const stamp = start.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${stamp}-${runId.slice(0, 8)}`;
}
