// `loraflow train`: validate the request, start (or attach to) its workflow, optionally watch it.
import path from 'node:path';
import { type Client, WorkflowExecutionAlreadyStartedError, type WorkflowHandle } from '@temporalio/client';
import { TrainRequest, type TrainRequestInput } from '../contract/pipeline.js';
import type { Config } from '../lib/config.js';
import { sha256 } from '../lib/hash.js';
import { makeStorage, type Storage } from '../lib/s3.js';
import type { PublishingTrainLora } from '../workflows/index.js';
import { CliError } from './connect.js';
import { estimateRun } from './estimate.js';
import { fingerprintDataset } from './fingerprint.js';

/** CLI flag for each request field, so validation errors name what the user typed. */
const FLAG: Record<string, string> = {
  name: '--name',
  'dataset.path': '--images',
  budget: '--budget',
  gpu: '--gpu',
  'training.triggerWord': '--trigger',
  'training.baseModel': '--base-model',
  'training.format': '--format',
  'training.sampleEvery': '--sample-every',
  'training.params.steps': '--steps',
  'training.params.rank': '--rank',
  'training.params.alpha': '--alpha',
  'training.params.learningRate': '--lr',
  'training.params.batchSize': '--batch-size',
  'training.params.resolution': '--resolution',
  'training.params.seed': '--seed',
};

/** `fieldName` says what the user wrote for a request field: a CLI flag here, a JSON field in the HTTP API. */
export async function buildRequest(
  input: Omit<TrainRequestInput, 'dataset'> & { images: string },
  config?: Config,
  fieldName: (field: string) => string = (field) => FLAG[field] ?? field,
): Promise<TrainRequest> {
  const remote = /^(https?|s3):\/\//i.test(input.images);
  const datasetPath = remote ? input.images : path.resolve(input.images);
  const fingerprint = await fingerprintDataset(datasetPath, config).catch((err: Error) => {
    throw new CliError(`${fieldName('dataset.path')}: ${err.message.replace(/^--images: /, '')}`);
  });
  const parsed = TrainRequest.safeParse({ ...input, images: undefined, dataset: { path: datasetPath, fingerprint } });
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.join('.');
    throw new CliError(`${fieldName(field)}: ${issue.message}`);
  }
  return parsed.data;
}

/** Same request (same files, same parameters) → same id → one run. */
export function workflowIdFor(request: TrainRequest): string {
  const digest = sha256(JSON.stringify(request)).slice(0, 12);
  return `lora-${request.name}-${digest}`;
}

export async function startTraining(
  client: Client,
  config: Config,
  request: TrainRequest,
  opts: { priority?: number; workflowId?: string; storage?: Storage } = {},
): Promise<{ handle: WorkflowHandle<PublishingTrainLora>; attached: boolean }> {
  // Known to cost more than its budget, or to fit no endpoint: refused before any GPU job.
  if (request.budget !== undefined || request.gpu !== undefined) {
    const estimate = await estimateRun(opts.storage ?? makeStorage(config), config, request);
    if (estimate.refusal) throw new CliError(`budget: ${estimate.refusal}`);
    if (!estimate.endpoints.length) throw new CliError(`gpu: no GPU endpoint fits this run: ${estimate.skipped.map((x) => `${x.id}: ${x.reason}`).join('; ')}`);
  }
  // An HTTP client's Idempotency-Key names its own id: that key then always means that one run.
  const workflowId = opts.workflowId ?? workflowIdFor(request);
  // USE_EXISTING answers a running twin's handle without saying so: look first, to tell the user.
  const running = await client.workflow
    .getHandle(workflowId)
    .describe()
    .then((d) => (d.status.name === 'RUNNING' ? d.runId : undefined), () => undefined);
  try {
    const handle = await client.workflow.start<PublishingTrainLora>('trainLora', {
      taskQueue: config.LORAFLOW_TASK_QUEUE,
      workflowId,
      args: [request],
      // Where GPU stages wait for a slot, lower keys go first; activities inherit it.
      ...(opts.priority ? { priority: { priorityKey: opts.priority } } : {}),
      // A running or published twin is attached to; a failed or cancelled one may be retried.
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: opts.workflowId ? 'REJECT_DUPLICATE' : 'ALLOW_DUPLICATE_FAILED_ONLY',
    });
    return { handle, attached: running !== undefined && handle.firstExecutionRunId === running };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return { handle: client.workflow.getHandle<PublishingTrainLora>(workflowId), attached: true };
    throw err;
  }
}
