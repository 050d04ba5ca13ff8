// Starts the durable pipeline for a seed request, through the CLI's own request builder and
// start (cli/train.ts): the same request twice is the same run, as with `loraflow train`.
import { buildRequest, startTraining } from '../../cli/train.js';
import type { TrainingSettings } from '../../contract/pipeline.js';
import type { ApiDeps } from '../context.js';
import { ApiError } from '../errors.js';
import { uploadPrefix } from '../routes/uploads.js';

/** A seed client's free-form name ("my_character") as a LoRA name ("my-character"). */
export function loraNameOf(raw: string, field: string): string {
  const name = raw.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 64);
  if (!name) throw new ApiError(400, 'invalid_request', `${field}: needs at least one letter or digit`, field);
  return name;
}

export async function startFromUpload(
  deps: ApiDeps,
  uploadId: string,
  o: { name: string; triggerWord: string; params?: Partial<TrainingSettings['params']>; fields: Record<string, string> },
): Promise<string> {
  const request = await buildRequest(
    { name: o.name, images: `s3://${deps.storage.bucket}/${uploadPrefix(uploadId)}`, training: { triggerWord: o.triggerWord, baseModel: deps.config.LORAFLOW_BASE_MODEL, params: o.params ?? {} } },
    deps.config,
    // Errors name the seed's own field (trigger_word, not training.triggerWord).
    (field) => o.fields[field] ?? field,
  );
  const { handle } = await startTraining(deps.client, deps.config, request);
  return handle.workflowId;
}
