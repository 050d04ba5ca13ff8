// /openapi.json (OpenAPI 3.1), generated from the API's zod schemas (api/schemas.ts) and the
// gateway's; api/openapi.json is the committed copy (`npm run contract`; a test fails on drift and
// validates it against the OpenAPI 3.1 schema).
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import './gateway/schemas.js'; // registers the gateway's schemas
import { apiSchemas } from './schemas.js';

type Json = Record<string, unknown>;
/** Request bodies are described as clients write them (defaults optional), the rest as the server sends them. */
const REQUEST_BODIES = new Set(['UploadCreate', 'TrainingCreate', 'ScheduleCreate', 'GenerationCreate', 'GatewayRun']);

function components(): Record<string, Json> {
  const render = (io: 'input' | 'output') =>
    (z.toJSONSchema(apiSchemas, { target: 'draft-2020-12', io, uri: (id) => `#/components/schemas/${id}` }) as { schemas: Record<string, Json> }).schemas;
  const input = render('input');
  const output = render('output');
  return Object.fromEntries(
    Object.keys(output).sort().map((id) => {
      const { $schema: _s, $id: _i, ...schema } = (REQUEST_BODIES.has(id) ? input : output)[id]!;
      return [id, schema];
    }),
  );
}

const ref = (id: string) => ({ $ref: `#/components/schemas/${id}` });
const json = (id: string, description: string) => ({ description, content: { 'application/json': { schema: ref(id) } } });
const errors = (...codes: number[]) =>
  Object.fromEntries(codes.map((code) => [String(code), json('Error', { 400: 'bad request: `field` names what was wrong', 401: 'missing or wrong bearer token', 404: 'no such thing', 409: 'not in a state for this', 413: 'body too large' }[code] ?? 'error')]));
const idParam = { name: 'id', in: 'path', required: true, schema: ref('TrainingId') };
const scheduleParam = { name: 'id', in: 'path', required: true, schema: ref('ScheduleId') };
const op = (summary: string, ok: Json, more: Json = {}, errs = [401, 404]) => ({ summary, ...more, responses: { ...ok, ...errors(...errs) } });

const paths = {
  '/v1/uploads': {
    post: op('presigned PUT URLs for a dataset\'s files', { 201: json('Upload', 'PUT each file to its URL') }, { requestBody: { required: true, content: { 'application/json': { schema: ref('UploadCreate') } } } }, [400, 401, 413]),
  },
  '/v1/trainings': {
    post: op(
      'start a training (or return the run this request or Idempotency-Key already has)',
      { 201: json('TrainingCreated', 'started'), 200: json('TrainingCreated', 'this request already had a run: this is it') },
      {
        parameters: [{ name: 'Idempotency-Key', in: 'header', required: false, schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,200}$' } }],
        requestBody: { required: true, content: { 'application/json': { schema: ref('TrainingCreate') } } },
      },
      [400, 401, 413],
    ),
    get: op(
      'recent trainings, newest first',
      { 200: json('TrainingList', 'the trainings') },
      {
        parameters: [
          { name: 'name', in: 'query', required: false, schema: { type: 'string' } },
          { name: 'stage', in: 'query', required: false, schema: { type: 'string' } },
          { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 500 } },
        ],
      },
      [400, 401],
    ),
  },
  '/v1/trainings/estimate': {
    post: op(
      "what a training would cost: per endpoint it may use, GPU seconds from earlier runs' measured speed (or stated defaults), cost, and whether the budget fits; starts nothing",
      { 200: json('TrainingEstimate', 'the estimate') },
      { requestBody: { required: true, content: { 'application/json': { schema: ref('TrainingCreate') } } } },
      [400, 401, 413],
    ),
  },
  '/v1/trainings/{id}': { get: op('a training\'s state, progress and result', { 200: json('TrainingStatus', 'its status') }, { parameters: [idParam] }) },
  '/v1/trainings/{id}/cancel': { post: op('cancel a training and its GPU job; answers once both stopped', { 200: json('Cancelled', 'its final status') }, { parameters: [idParam] }) },
  '/v1/trainings/{id}/logs': { get: op('each GPU job as the endpoint reports it', { 200: json('Logs', 'the logs') }, { parameters: [idParam] }) },
  '/v1/trainings/{id}/download': { get: op('presigned URLs of the published LoRA and its metadata', { 200: json('Download', 'the URLs') }, { parameters: [idParam] }, [401, 404, 409]) },
  '/v1/trainings/{id}/report': { get: op('presigned URLs of the run\'s report', { 200: json('Report', 'the URLs') }, { parameters: [idParam] }, [401, 404, 409]) },
  '/v1/trainings/{id}/events': {
    get: op(
      'progress as server-sent events (`progress`, then `end`)',
      { 200: { description: 'an event stream; each `progress` event\'s data is a ProgressEvent', content: { 'text/event-stream': { schema: { type: 'string' }, 'x-event-data': ref('ProgressEvent') } } } },
      { parameters: [idParam] },
    ),
  },
  '/v1/schedules': {
    post: op('retrain a LoRA on a cron schedule (`retrain-<name>`)', { 201: { description: 'created', content: { 'application/json': { schema: { type: 'object', properties: { scheduleId: ref('ScheduleId'), webhooks: { type: 'string', description: 'the workflow that starts each scheduled run\'s webhook delivery' } }, required: ['scheduleId'] } } } } }, { requestBody: { required: true, content: { 'application/json': { schema: ref('ScheduleCreate') } } } }, [400, 401, 409, 413]),
    get: op('schedules: state, next runs, recent runs and their outcome', { 200: json('ScheduleList', 'the schedules') }, {}, [401]),
  },
  ...Object.fromEntries(
    (['pause', 'unpause', 'trigger'] as const).map((a) => [`/v1/schedules/{id}/${a}`, { post: op(`${a} a schedule`, { 200: json('ScheduleDone', 'done') }, { parameters: [scheduleParam] }) }]),
  ),
  '/v1/schedules/{id}': { delete: op('delete a schedule (runs already started go on)', { 200: json('ScheduleDone', 'deleted') }, { parameters: [scheduleParam] }) },
  '/v1/loras': { get: op('published LoRAs and their latest version', { 200: json('LoraList', 'the LoRAs') }, {}, [401]) },
  '/v1/loras/{name}/versions': { get: op('every published version of a LoRA, newest first', { 200: json('LoraVersions', 'the versions') }, { parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }] }, [400, 401, 404]) },
  '/v1/generations': {
    post: op(
      'render images with published LoRAs (one GPU job); stored under the first LoRA\'s version',
      { 201: json('GenerationCreated', 'started'), 200: json('GenerationCreated', 'this Idempotency-Key already had a generation: this is it') },
      {
        parameters: [{ name: 'Idempotency-Key', in: 'header', required: false, schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,200}$' } }],
        requestBody: { required: true, content: { 'application/json': { schema: ref('GenerationCreate') } } },
      },
      [400, 401, 413],
    ),
  },
  '/v1/generations/{id}': { get: op('a generation\'s status; once COMPLETED its result and presigned URLs of the images', { 200: json('Generation', 'the generation') }, { parameters: [idParam] }) },
  '/v1/generations/{id}/cancel': { post: op('cancel a generation and its GPU job; answers once both stopped', { 200: json('Cancelled', 'its final status') }, { parameters: [idParam] }) },
  ...gatewayPaths(),
};

/** RunPod's client API on /v2/{endpointId}: what its official clients call. */
function gatewayPaths() {
  const endpoint = { name: 'endpointId', in: 'path', required: true, schema: { type: 'string' } };
  const job = { name: 'jobId', in: 'path', required: true, schema: { type: 'string' } };
  const run = (summary: string) =>
    op(summary, { 200: json('GatewayJob', 'the job') }, { tags: ['RunPod gateway'], parameters: [endpoint], requestBody: { required: true, content: { 'application/json': { schema: ref('GatewayRun') } } } }, [400, 401, 413]);
  return {
    '/v2/{endpointId}/run': { post: run('start a job (seed 000 or seed 004 input)') },
    '/v2/{endpointId}/runsync': { post: run('start a job and wait up to 90 s for it') },
    '/v2/{endpointId}/status/{jobId}': { get: op('a job\'s status; COMPLETED ones carry `output`', { 200: json('GatewayJob', 'the job') }, { tags: ['RunPod gateway'], parameters: [endpoint, job] }) },
    '/v2/{endpointId}/cancel/{jobId}': { post: op('cancel a job', { 200: json('GatewayJob', 'the job') }, { tags: ['RunPod gateway'], parameters: [endpoint, job] }) },
    '/v2/{endpointId}/health': { get: op('jobs and workers, as RunPod counts them', { 200: json('GatewayHealth', 'health') }, { tags: ['RunPod gateway'], parameters: [endpoint] }, [401]) },
  };
}

export function openApiDocument(): Json {
  return {
    openapi: '3.1.0',
    info: { title: 'loraflow', version: '1', description: 'Durable LoRA training over HTTP, and a RunPod-shaped gateway for clients of the old workers. Every route needs `Authorization: Bearer <token>`.' },
    servers: [{ url: 'http://127.0.0.1:8400' }],
    security: [{ bearer: [] }],
    paths,
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } }, schemas: components() },
  };
}

export const renderOpenApi = () => `${JSON.stringify(openApiDocument(), null, 2)}\n`;

export const OPENAPI_FILE = new URL('./openapi.json', import.meta.url);

// `npm run contract` writes api/openapi.json; test/unit/generated.test.ts fails when it is stale.
if (process.argv[1] === fileURLToPath(import.meta.url)) writeFileSync(OPENAPI_FILE, renderOpenApi());
