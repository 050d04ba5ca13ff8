// Generate as a story: pin each LoRA to a version → one generate GPU job → store the verified PNGs
// and contact sheet under the first LoRA's version. Like a training it shows in the Web UI (LoraName,
// LoraStage, a memo line), and a failed or cancelled generation cancels its GPU job.
import {
  CancellationScope,
  proxyActivities,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { GenerateRequest, GenerationResult } from '../contract/pipeline.js';
import { runKeyOf } from '../lib/keys.js';
import { cancelGpuJobs, gpuStages } from './gpu-activities.js';
import { gpuProgressSignal, LoraBaseModelKey, LoraNameKey, LoraStageKey } from './definitions.js';

const { resolveLoras, storeGeneration } = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  retry: { maximumAttempts: 12, maximumInterval: '30 seconds', nonRetryableErrorTypes: ['LoraNotFound', 'InvalidInput', 'ArtifactNotVerified'] },
});

export async function generateImages(request: GenerateRequest): Promise<GenerationResult> {
  const { workflowId, runId } = workflowInfo();
  const runKey = runKeyOf(workflowId, runId);
  const { loras: refs, budget, ...params } = request;
  const label = `${refs[0]!.name}@${refs[0]!.version ?? 'latest'}`;
  const enter = (stage: string, line: string) => {
    upsertSearchAttributes([{ key: LoraStageKey, value: stage }]);
    upsertMemo({ summary: `${label}: ${line}` });
  };
  // The Web UI's line follows the GPU job's state (waiting for capacity, cold start, running).
  setHandler(gpuProgressSignal, (gpu) => {
    if (gpu.gpuState) upsertMemo({ summary: `${label}: generating: ${gpu.gpuState}${gpu.gpuDetail ? ` (${gpu.gpuDetail})` : ''}` });
  });
  upsertSearchAttributes([{ key: LoraNameKey, value: refs[0]!.name }]);

  try {
    enter('resolve', 'resolving LoRA versions');
    const { loras } = await resolveLoras({ loras: refs });
    upsertSearchAttributes([{ key: LoraBaseModelKey, value: loras[0]!.baseModel }]);
    enter('generate', `generating ${params.prompts.length * params.n} images`);
    const generated = await gpuStages('6 hours').generateOnGpu({ runKey, loras, params, budget });
    enter('store', 'storing images');
    const result = await storeGeneration({ id: workflowId, loras, params, generated });
    enter('generated', `${result.images.length} images at ${result.uri}`);
    return result;
  } catch (err) {
    const cancelled = CancellationScope.current().consideredCancelled;
    enter(cancelled ? 'cancelled' : 'failed', cancelled ? 'cancelled' : 'failed');
    // Whatever failed, no GPU job of this generation may keep billing.
    await CancellationScope.nonCancellable(() => cancelGpuJobs({ runKey })).catch(() => undefined);
    throw err;
  }
}
