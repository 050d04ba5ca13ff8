// /v1/trainings: create, list, get, cancel, logs, download and report, each the CLI's own function
// (cli/train.ts, cli/inspect.ts, cli/logs.ts) so the API and `loraflow` cannot drift apart.
import { Hono } from 'hono';
import { webUiLink } from '../../cli/connect.js';
import { cancel, list, publishedOf, reportKeys, status } from '../../cli/inspect.js';
import { pipelineLogs } from '../../cli/logs.js';
import { estimateRun } from '../../cli/estimate.js';
import { buildRequest, startTraining } from '../../cli/train.js';
import { sha256 } from '../../lib/hash.js';
import { keyOfUri } from '../../lib/keys.js';
import { presignGet } from '../../lib/s3.js';
import { type ApiDeps, expiresAt, jsonBody } from '../context.js';
import { ApiError, parse } from '../errors.js';
import { progressEvents } from '../events.js';
import { TrainingCreate, TrainingId, TrainingListQuery } from '../schemas.js';
import { uploadPrefix } from './uploads.js';
import { checkWebhook, startWebhooks } from './webhooks.js';

const IdempotencyKey = /^[A-Za-z0-9._:-]{1,200}$/;

/** The request the CLI builds from a body; errors name the JSON field (`images` or `upload` for the dataset). */
export async function requestOf({ config, storage }: ApiDeps, body: Pick<TrainingCreate, 'name' | 'images' | 'upload' | 'budget' | 'training' | 'gpu'>) {
  const images = body.upload ? `s3://${storage.bucket}/${uploadPrefix(body.upload)}` : body.images!;
  return buildRequest(
    { name: body.name, images, budget: body.budget, ...(body.gpu ? { gpu: body.gpu } : {}), training: { ...body.training, baseModel: body.training.baseModel ?? config.LORAFLOW_BASE_MODEL } },
    config,
    (field) => (field === 'dataset.path' ? (body.upload ? 'upload' : 'images') : field),
  );
}

export function trainingRoutes(deps: ApiDeps): Hono {
  const { client, config, storage } = deps;
  const idOf = (raw: string) => parse(TrainingId, raw, 'id');
  const presigned = async (name: string, key: string) => ({ name, url: await presignGet(storage, key, config.LORAFLOW_API_URL_SECONDS), expiresAt: expiresAt(config.LORAFLOW_API_URL_SECONDS) });

  return new Hono()
    .post('/', async (c) => {
      const body = parse(TrainingCreate, await jsonBody(c));
      const key = c.req.header('idempotency-key');
      if (key !== undefined && !IdempotencyKey.test(key)) throw new ApiError(400, 'invalid_request', 'Idempotency-Key: 1 to 200 letters, digits, ".", "_", ":" or "-"', 'Idempotency-Key');
      const request = await requestOf(deps, body);
      // Without a key the request is its own identity, as in the CLI: the same request is the same run.
      const workflowId = key ? `api-${body.name}-${sha256(key).slice(0, 16)}` : undefined;
      if (body.webhook) await checkWebhook(config, body.webhook.url);
      const { handle, attached } = await startTraining(client, config, request, { priority: body.priority, storage, ...(workflowId ? { workflowId } : {}) });
      const webhooks = body.webhook ? await startWebhooks(deps, handle.workflowId, body.webhook) : undefined;
      return c.json({ id: handle.workflowId, attached, webUi: webUiLink(config, handle.workflowId), ...(webhooks ? { webhooks } : {}) }, attached ? 200 : 201);
    })
    // The dry run: what the training would cost on each endpoint it may use; starts nothing.
    .post('/estimate', async (c) => c.json(await estimateRun(storage, config, await requestOf(deps, parse(TrainingCreate, await jsonBody(c))))))
    .get('/', async (c) => {
      const q = parse(TrainingListQuery, c.req.query(), 'query');
      return c.json({ trainings: await list(client, q.limit, { name: q.name, stage: q.stage }) });
    })
    .get('/:id', async (c) => c.json(await status(client, idOf(c.req.param('id')))))
    .post('/:id/cancel', async (c) => {
      const id = idOf(c.req.param('id'));
      return c.json({ id, status: await cancel(client, id) });
    })
    .get('/:id/logs', async (c) => c.json(await pipelineLogs(client, config, idOf(c.req.param('id')))))
    .get('/:id/download', async (c) => {
      const id = idOf(c.req.param('id'));
      const p = await publishedOf(client, id, 'download');
      return c.json({ id, version: p.version, sha256: p.sha256, bytes: p.bytes, files: [await presigned('lora.safetensors', keyOfUri(p.uri)), await presigned('metadata.json', keyOfUri(p.metadataUri))] });
    })
    .get('/:id/report', async (c) => {
      const id = idOf(c.req.param('id'));
      const { prefix, keys } = await reportKeys(client, config, id);
      return c.json({ id, files: await Promise.all(keys.map((k) => presigned(k.slice(prefix.length), k))) });
    })
    .get('/:id/events', async (c) => {
      const id = idOf(c.req.param('id'));
      await status(client, id); // 404 before the stream starts, not an empty stream
      return progressEvents(c, client, id);
    });
}
