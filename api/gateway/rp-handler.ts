// Seed 004's `rp_handler` types, each mapped onto a durable operation: training is a pipeline in
// Temporal (process_id = its workflow id, so any instance finds it after any restart), files are
// LoRAs in S3 (presigned URLs, base64 only under a size limit, never a key outside the LoRA store),
// training data is base64 stored in S3. Returns the handler's output, or `{error}` (a FAILED job).
import { cancel, list, publishedOf } from '../../cli/inspect.js';
import type { LatestPublished } from '../../contract/pipeline.js';
import { keyOfUri } from '../../lib/keys.js';
import { exists, getBytes, getJson, listKeys, presignGet } from '../../lib/s3.js';
import type { ApiDeps } from '../context.js';
import { ApiError } from '../errors.js';
import { fromAiToolkitYaml } from './ai-toolkit.js';
import { trainingDataUpload, uploadBase64 } from './dataset.js';
import { pipelineJob } from './jobs.js';
import { RP_HANDLER_TYPES } from './schemas.js';
import { loraNameOf, startFromUpload } from './start.js';

/** Files at most this big also come back as base64 (what seed 004's clients read); larger ones as a URL only. */
const INLINE_BYTES = 2 * 2 ** 20;
const STORE_KEY = /^loras\/[a-z0-9][a-z0-9-]*\/[A-Za-z0-9._-]+\/(lora\.safetensors|metadata\.json)$/;

type Input = Record<string, unknown>;
const str = (input: Input, key: string): string => {
  const v = input[key];
  if (typeof v !== 'string' || !v) throw new ApiError(400, 'invalid_request', `input.${key}: required`, `input.${key}`);
  return v;
};

export async function rpHandler(deps: ApiDeps, input: Input): Promise<unknown> {
  const type = input.type ?? (input.prompt !== undefined ? 'generate' : undefined);
  switch (type) {
    case 'health':
      return { status: 'healthy', service: 'loraflow', durable: true };
    case 'generate':
      return { error: 'generate is not supported here: loraflow trains LoRAs and does not generate images (yet)' };
    case 'upload_training_data': {
      const files = input.files;
      if (!Array.isArray(files) || !files.length) throw new ApiError(400, 'invalid_request', 'input.files: a non-empty list of {filename, content}', 'input.files');
      const trainingName = str(input, 'training_name');
      const stored = await uploadBase64(deps, trainingName, files as { filename: string; content: string }[]);
      return { status: 'success', training_name: trainingName, uploaded_files: stored, total_images: stored.filter((f) => !f.endsWith('.txt')).length, total_captions: stored.filter((f) => f.endsWith('.txt')).length };
    }
    case 'train':
    case 'train_with_yaml':
      return train(deps, input);
    case 'process_status':
      return processStatus(deps, str(input, 'process_id'));
    case 'processes':
      return { processes: (await list(deps.client, 100)).map((r) => ({ process_id: r.workflowId, name: r.name, status: r.status.toLowerCase(), stage: r.stage, created_at: r.started })) };
    case 'cancel': {
      const id = str(input, 'process_id');
      return { process_id: id, status: (await cancel(deps.client, id)).toLowerCase() };
    }
    case 'lora':
    case 'list_models':
    case 'list_files':
      return { models: await publishedLoras(deps) };
    case 'download': {
      const p = await publishedOf(deps.client, str(input, 'process_id'), 'download');
      return fileOutput(deps, keyOfUri(p.uri));
    }
    case 'download_file':
      return fileOutput(deps, storeKey(str(input, 'file_path')));
    case 'bulk_download': {
      const paths = input.file_paths;
      if (!Array.isArray(paths) || !paths.length) throw new ApiError(400, 'invalid_request', 'input.file_paths: a non-empty list of LoRA paths', 'input.file_paths');
      return { files: await Promise.all(paths.map(async (p, i) => ({ file_path: p, url: await presignGet(deps.storage, storeKey(String(p), `input.file_paths.${i}`), deps.config.LORAFLOW_API_URL_SECONDS) }))) };
    }
    default:
      throw new ApiError(400, 'invalid_request', `input.type: expected one of ${RP_HANDLER_TYPES.join(', ')}, got ${JSON.stringify(type)}`, 'input.type');
  }
}

async function train(deps: ApiDeps, input: Input) {
  const yamlText = input.yaml_config ?? input.config;
  if (typeof yamlText !== 'string') throw new ApiError(400, 'invalid_request', 'input.yaml_config: ai-toolkit YAML as a string', 'input.yaml_config');
  let t;
  try {
    t = fromAiToolkitYaml(yamlText);
  } catch (err) {
    throw new ApiError(400, 'invalid_request', `input.yaml_config: ${(err as Error).message}`, 'input.yaml_config');
  }
  const trainingName = t.trainingName ?? (typeof input.training_name === 'string' ? input.training_name : undefined);
  if (!trainingName) throw new ApiError(400, 'invalid_request', 'input.yaml_config: config.process.0.datasets.0.folder_path (or input.training_name) names the uploaded training data', 'input.yaml_config');
  const triggerWord = t.triggerWord ?? (typeof input.trigger_word === 'string' ? input.trigger_word : undefined);
  if (!triggerWord) throw new ApiError(400, 'invalid_request', 'input.yaml_config: config.process.0.trigger_word is required', 'input.yaml_config');
  const uploadId = trainingDataUpload(trainingName);
  if (!(await listKeys(deps.storage, `uploads/${uploadId}/`)).length) throw new ApiError(400, 'invalid_request', `input.yaml_config: no training data uploaded as "${trainingName}" (upload_training_data first)`, 'input.yaml_config');
  const p = 'config.process.0.';
  const processId = await startFromUpload(deps, uploadId, {
    name: loraNameOf(t.name, 'config.name'),
    triggerWord,
    params: t.params,
    fields: { 'training.triggerWord': `${p}trigger_word`, 'training.params.steps': `${p}train.steps`, 'training.params.rank': `${p}network.linear`, 'training.params.alpha': `${p}network.linear_alpha`, 'training.params.learningRate': `${p}train.lr`, 'training.params.batchSize': `${p}train.batch_size`, 'training.params.resolution': `${p}datasets.0.resolution`, 'dataset.path': 'training_name' },
  });
  return { process_id: processId, status: 'started', ignored_keys: t.ignored };
}

async function processStatus(deps: ApiDeps, id: string) {
  const job = await pipelineJob(deps, id);
  if (!job) return { error: `no process ${id}` };
  const status = { IN_QUEUE: 'queued', IN_PROGRESS: 'running', COMPLETED: 'completed', FAILED: 'failed', CANCELLED: 'cancelled', TIMED_OUT: 'failed' }[job.status];
  return { process_id: id, status, ...(job.output && typeof job.output === 'object' ? { details: job.output } : {}), ...(job.error ? { error: job.error } : {}) };
}

async function publishedLoras(deps: ApiDeps) {
  const latest = (await listKeys(deps.storage, 'loras/')).filter((k) => /^loras\/[^/]+\/latest\.json$/.test(k));
  return Promise.all(
    latest.map(async (k) => {
      const l = await getJson<LatestPublished>(deps.storage, k);
      return { name: l.name, version: l.version, file_path: keyOfUri(l.uri), url: await presignGet(deps.storage, keyOfUri(l.uri), deps.config.LORAFLOW_API_URL_SECONDS) };
    }),
  );
}

/** A path a seed client sends ("/workspace/output/…" there): only a LoRA or its metadata in the store. */
function storeKey(raw: string, field = 'input.file_path'): string {
  const key = raw.replace(/^\/+/, '');
  if (!STORE_KEY.test(key) || key.includes('..')) throw new ApiError(400, 'invalid_request', `${field}: only loras/<name>/<version>/lora.safetensors or metadata.json (as list_models names them) can be downloaded`, field);
  return key;
}

async function fileOutput(deps: ApiDeps, key: string) {
  const found = await exists(deps.storage, key);
  if (!found) return { error: `no file ${key}` };
  const url = await presignGet(deps.storage, key, deps.config.LORAFLOW_API_URL_SECONDS);
  const inline = found.bytes <= INLINE_BYTES ? { content: (await getBytes(deps.storage, key)).toString('base64') } : {};
  return { file_path: key, filename: key.split('/').at(-1), size: found.bytes, url, ...inline };
}
