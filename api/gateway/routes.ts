// /v2/{endpointId}/…: RunPod's client API (run, runsync, status, status-sync, cancel, health,
// purge-queue), so the official `runpod` Python client and `runpod-sdk` work with only their base
// URL changed. Seed 000 input starts a pipeline whose job id is the workflow id; seed 004 input is
// answered by rp-handler.ts and recorded in S3. A job's status is read from Temporal or S3, never
// from this process's memory, so any instance answers the same after any restart.
import { WorkflowNotFoundError } from '@temporalio/client';
import { type Context, Hono } from 'hono';
import { CliError } from '../../cli/connect.js';
import type { ApiDeps } from '../context.js';
import { jsonBody } from '../context.js';
import { ApiError, parse } from '../errors.js';
import { uploadFromUrls } from './dataset.js';
import { jobStatus, recordInstantJob, waitForJob } from './jobs.js';
import { rpHandler } from './rp-handler.js';
import { FluxGymInput, type GatewayJob, GatewayRun } from './schemas.js';
import { loraNameOf, startFromUpload } from './start.js';

/** RunPod's payload limits. */
export const GATEWAY_LIMITS = { run: 10 * 2 ** 20, runsync: 20 * 2 ** 20 };
/** The official JS client clamps its long-polls to 90 s; so does this. */
const waitMsOf = (wait: string | undefined) => Math.min(90_000, Math.max(1_000, Number(wait) || 90_000));
const isSeed004 = (input: Record<string, unknown>) => typeof input.type === 'string' || input.prompt !== undefined;

export function gatewayRoutes(deps: ApiDeps): Hono {
  const notFound = (id: string) => new ApiError(404, 'not_found', `no job ${id}`);

  /** A job for `input`: its handler's refusal (bad field, refused URL) is a FAILED job, as on RunPod. */
  async function submit(input: Record<string, unknown>): Promise<GatewayJob> {
    try {
      if (isSeed004(input)) {
        const output = await rpHandler(deps, input);
        const error = output && typeof output === 'object' && 'error' in output ? String((output as { error: unknown }).error) : undefined;
        return recordInstantJob(deps.storage, error ? { error } : { output });
      }
      const f = parse(FluxGymInput, input, 'input');
      const uploadId = await uploadFromUrls(deps, f.images, 'images');
      const id = await startFromUpload(deps, uploadId, {
        name: loraNameOf(f.character_name, 'character_name'),
        triggerWord: f.trigger_word,
        ...(f.steps ? { params: { steps: f.steps } } : {}),
        fields: { 'training.triggerWord': 'trigger_word', 'training.params.steps': 'steps', name: 'character_name', 'dataset.path': 'images' },
      });
      return (await jobStatus(deps, id)) ?? { id, status: 'IN_QUEUE' };
    } catch (err) {
      // A bad field, a refused URL, no such process, nothing published yet: the job fails with why.
      if (err instanceof ApiError && err.status === 400) return recordInstantJob(deps.storage, { error: err.message.startsWith('input.') ? err.message : `input.${err.message}` });
      if (err instanceof CliError) return recordInstantJob(deps.storage, { error: err.reason === 'invalid' ? `input.${err.message}` : err.message });
      throw err;
    }
  }

  const body = async (c: Context) => parse(GatewayRun, await jsonBody(c)).input;

  return new Hono()
    .post('/:endpointId/run', async (c) => {
      const job = await submit(await body(c));
      return c.json({ id: job.id, status: job.status });
    })
    .post('/:endpointId/runsync', async (c) => {
      const job = await submit(await body(c));
      return c.json((await waitForJob(deps, job.id, waitMsOf(c.req.query('wait')))) ?? job);
    })
    .get('/:endpointId/status/:id', async (c) => {
      const job = await jobStatus(deps, c.req.param('id'));
      if (!job) throw notFound(c.req.param('id'));
      return c.json(job);
    })
    .on(['GET', 'POST'], '/:endpointId/status-sync/:id', async (c) => {
      const job = await waitForJob(deps, c.req.param('id'), waitMsOf(c.req.query('wait')));
      if (!job) throw notFound(c.req.param('id'));
      return c.json(job);
    })
    .post('/:endpointId/cancel/:id', async (c) => {
      const id = c.req.param('id');
      const job = await jobStatus(deps, id);
      if (!job) throw notFound(id);
      if (job.status !== 'IN_QUEUE' && job.status !== 'IN_PROGRESS') return c.json({ id, status: job.status });
      // The workflow cancels its GPU job itself (WAIT_CANCELLATION_COMPLETED); RunPod answers at once too.
      await deps.client.workflow.getHandle(id).cancel().catch((err: unknown) => {
        if (!(err instanceof WorkflowNotFoundError)) throw err;
      });
      return c.json({ id, status: 'CANCELLED' });
    })
    .post('/:endpointId/purge-queue', (c) => c.json({ removed: 0, status: 'completed' }))
    .get('/:endpointId/health', async (c) => {
      const count = async (status: string) => (await deps.client.workflow.count(`WorkflowType = 'trainLora' AND ExecutionStatus = '${status}'`)).count;
      const [running, completed, failed] = await Promise.all([count('Running'), count('Completed'), count('Failed')]);
      return c.json({ jobs: { completed, failed, inProgress: running, inQueue: 0, retried: 0 }, workers: { idle: 0, running } });
    });
}
