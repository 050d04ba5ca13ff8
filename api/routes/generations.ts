// /v1/generations: `loraflow generate` over HTTP (create, get with presigned URLs of the images once
// stored, cancel), using the CLI's own functions so the two cannot drift apart.
import { Hono } from 'hono';
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError } from '@temporalio/client';
import { webUiLink } from '../../cli/connect.js';
import { buildGenerateRequest, startGeneration } from '../../cli/generate.js';
import { cancel } from '../../cli/inspect.js';
import type { GenerateRequest, GenerationResult } from '../../contract/pipeline.js';
import { sha256 } from '../../lib/hash.js';
import { keyOfUri } from '../../lib/keys.js';
import { presignGet } from '../../lib/s3.js';
import { type ApiDeps, expiresAt, jsonBody } from '../context.js';
import { ApiError, parse } from '../errors.js';
import { GenerationCreate, TrainingId } from '../schemas.js';

const IdempotencyKey = /^[A-Za-z0-9._:-]{1,200}$/;

export function generationRoutes({ client, config, storage }: ApiDeps): Hono {
  const seconds = config.LORAFLOW_API_URL_SECONDS;
  const presigned = async (uri: string) => ({ name: uri.split('/').pop()!, url: await presignGet(storage, keyOfUri(uri), seconds), expiresAt: expiresAt(seconds) });
  /** A generateImages workflow's handle and description; 404 for any other id. */
  const generation = async (raw: string) => {
    const id = parse(TrainingId, raw, 'id');
    const handle = client.workflow.getHandle<(r: GenerateRequest) => Promise<GenerationResult>>(id);
    const description = await handle.describe().catch((err: unknown) => {
      throw err instanceof WorkflowNotFoundError ? new ApiError(404, 'not_found', `no generation with id ${id}`) : err;
    });
    if (description.type !== 'generateImages') throw new ApiError(404, 'not_found', `no generation with id ${id}`);
    return { id, handle, description };
  };

  return new Hono()
    .post('/', async (c) => {
      const request = buildGenerateRequest(parse(GenerationCreate, await jsonBody(c)));
      const key = c.req.header('idempotency-key');
      if (key !== undefined && !IdempotencyKey.test(key)) throw new ApiError(400, 'invalid_request', 'Idempotency-Key: 1 to 200 letters, digits, ".", "_", ":" or "-"', 'Idempotency-Key');
      const workflowId = key ? `api-gen-${request.loras[0]!.name}-${sha256(key).slice(0, 16)}` : undefined;
      try {
        const handle = await startGeneration(client, config, request, workflowId);
        return c.json({ id: handle.workflowId, attached: false, webUi: webUiLink(config, handle.workflowId) }, 201);
      } catch (err) {
        if (!(err instanceof WorkflowExecutionAlreadyStartedError) || !workflowId) throw err;
        return c.json({ id: workflowId, attached: true, webUi: webUiLink(config, workflowId) }, 200);
      }
    })
    .get('/:id', async (c) => {
      const { id, handle, description } = await generation(c.req.param('id'));
      const status = description.status.name;
      const summary = typeof description.memo?.summary === 'string' ? description.memo.summary : undefined;
      if (status !== 'COMPLETED') return c.json({ id, status, ...(summary ? { summary } : {}) });
      const result = await handle.result();
      const files = await Promise.all([...result.images, result.contactSheet].map((f) => presigned(f.uri)));
      return c.json({ id, status, ...(summary ? { summary } : {}), result, files });
    })
    .post('/:id/cancel', async (c) => {
      const { id } = await generation(c.req.param('id'));
      return c.json({ id, status: await cancel(client, id) });
    });
}
