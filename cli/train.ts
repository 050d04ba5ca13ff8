// `loraflow train`: validate the request, start (or attach to) its workflow, optionally watch it.
import path from 'node:path';
import { type Client, WorkflowExecutionAlreadyStartedError, type WorkflowHandle } from '@temporalio/client';
import { familyOf, withFamilyDefaults } from '../contract/families.js';
import { type LoraMetadata, TrainingSettings, TrainRequest, type TrainRequestInput } from '../contract/pipeline.js';
import type { Config } from '../lib/config.js';
import { keyOfUri } from '../lib/keys.js';
import { sha256 } from '../lib/hash.js';
import { expandPrompts } from '../lib/prompts.js';
import { getJson, makeStorage, type Storage } from '../lib/s3.js';
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
  'training.samplePrompts': '--sample-prompt',
  'training.saveEvery': '--save-every',
  'training.params.steps': '--steps',
  'training.params.rank': '--rank',
  'training.params.alpha': '--alpha',
  'training.params.learningRate': '--lr',
  'training.params.batchSize': '--batch-size',
  'training.params.resolution': '--resolution',
  'training.params.seed': '--seed',
  'training.params.quantizeBase': '--quantize-base',
  'training.params.captionDropout': '--caption-dropout',
  'initFrom.name': '--init-from',
  'initFrom.version': '--init-from',
  'captions.captioner': '--captioner',
  'captions.prompt': '--caption-prompt',
  'captions.prefix': '--caption-prefix',
  'captions.suffix': '--caption-suffix',
};

/** `--init-from`: NAME@VERSION, NAME@latest, or `latest` (the run's own name's newest version). */
export function parseInitFrom(value: string, ownName: string): { name: string; version: string } {
  if (value === 'latest') return { name: ownName, version: 'latest' };
  const at = value.lastIndexOf('@');
  if (at <= 0 || at === value.length - 1) throw new CliError(`--init-from: expected NAME@VERSION, NAME@latest or latest, got ${JSON.stringify(value)}`);
  return { name: value.slice(0, at), version: value.slice(at + 1) };
}

/**
 * `loraflow extend`: the published run's own training, `added` steps longer, continued from its
 * final checkpoint on its images and captions. The dataset field names the parent's metadata: the
 * workflow reads neither it nor the parent's dataset source again.
 */
export async function buildExtendRequest(config: Config, parent: { metadataUri: string }, added: number, budget?: number): Promise<TrainRequest> {
  const meta = await getJson<LoraMetadata>(makeStorage(config), keyOfUri(parent.metadataUri));
  if (!meta.checkpoint) throw new CliError(`${meta.name}@${meta.version} has no final checkpoint (published before loraflow kept one); start a new training from its weights with \`loraflow train --init-from ${meta.name}@${meta.version}\``);
  const training = TrainingSettings.parse(meta);
  const parsed = TrainRequest.safeParse({
    name: meta.name,
    dataset: { path: parent.metadataUri, fingerprint: meta.dataset.manifestSha256 },
    training: { ...training, params: { ...training.params, steps: meta.checkpoint.step + added } },
    initFrom: { name: meta.name, version: meta.version, mode: 'continue' },
    ...(budget ?? meta.budget ? { budget: budget ?? meta.budget } : {}),
    ...(meta.hub ? { hub: meta.hub } : {}),
  });
  if (!parsed.success) throw new CliError(`--steps: ${parsed.error.issues[0]!.message}`);
  return parsed.data;
}

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
  // Steps, rank and learning rate left out: the base model family's (contract/families.ts).
  const family = familyOf(input.training.baseModel, config?.LORAFLOW_BASE_MODEL_FAMILIES);
  const training = { ...input.training, params: withFamilyDefaults(input.training.params ?? {}, family) };
  const parsed = TrainRequest.safeParse({ ...input, training, images: undefined, dataset: { path: datasetPath, fingerprint } });
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.join('.');
    // An item of a list flag (--sample-prompt given twice) is named by its flag and position.
    const item = /^(.*)\.(\d+)$/.exec(field);
    throw new CliError(`${item && !FLAG[field] && FLAG[item[1]!] ? `${fieldName(item[1]!)} #${Number(item[2]) + 1}` : fieldName(field)}: ${issue.message}`);
  }
  try {
    expandPrompts(parsed.data.training.samplePrompts, parsed.data.training.triggerWord);
  } catch (err) {
    throw new CliError(`${fieldName('training.samplePrompts')}: ${(err as Error).message.replace(/^samplePrompts\./, '#')}`);
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
