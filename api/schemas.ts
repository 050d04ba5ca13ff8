// The HTTP API's request and response bodies, in zod: the routes validate with them and
// api/openapi.ts turns them into /openapi.json, so the document cannot say one thing and the
// server do another.
import { z } from 'zod';
import { WEBHOOK_EVENTS } from '../contract/webhooks.js';
import { Budget, GenerateRequest, LoraName, Stage, TrainingSettings } from '../contract/pipeline.js';

/** The named schemas /openapi.json lists under components.schemas. */
export const apiSchemas = z.registry<{ id: string; description?: string }>();

/** A workflow id as `loraflow list` prints it; a scheduled run's has ':' in its time (`retrain-<name>-2026-01-01T03:00:00Z`). */
export const TrainingId = z.string().regex(/^[A-Za-z0-9._:-]{1,200}$/, 'letters, digits, ".", "_", ":" or "-"').register(apiSchemas, { id: 'TrainingId' });
/** Made by POST /v1/uploads: 32 hex digits, unguessable. */
export const UploadId = z.string().regex(/^up-[0-9a-f]{32}$/, 'an id returned by POST /v1/uploads').register(apiSchemas, { id: 'UploadId' });
function PresignedFileSchema() {
  return z.object({ name: z.string(), url: z.string(), expiresAt: z.string() });
}
/** A file name inside an upload: no directories, nothing hidden. */
const FileName = z.string().max(200).regex(/^[A-Za-z0-9][A-Za-z0-9._ -]*$/, 'a plain file name (letters, digits, ".", "_", "-", space), no directories');

export const ErrorBody = z
  .object({ error: z.object({ code: z.string(), message: z.string(), field: z.string().optional() }) })
  .register(apiSchemas, { id: 'Error', description: 'Every error: `field` names the request field that was wrong, where one was.' });

export const UploadCreate = z
  .object({
    files: z
      .array(z.object({ name: FileName, contentType: z.enum(['image/png', 'image/jpeg', 'image/webp', 'text/plain', 'application/zip']).optional() }))
      .min(1)
      .max(1000)
      .refine((files) => new Set(files.map((f) => f.name)).size === files.length, 'file names must be distinct'),
  })
  .register(apiSchemas, { id: 'UploadCreate', description: 'The images (and sidecar .txt captions), or one .zip of them, to upload; their bytes go straight to S3 (one presigned PUT each: S3 takes up to 5 GB in one, above LORAFLOW_DATASET_MAX_BYTES).' });

export const Upload = z
  .object({
    uploadId: UploadId,
    expiresAt: z.string(),
    files: z.array(z.object({ name: z.string(), method: z.literal('PUT'), url: z.string(), headers: z.record(z.string(), z.string()) })),
  })
  .register(apiSchemas, { id: 'Upload', description: 'PUT each file to its presigned URL, then name `uploadId` in a training.' });

export const TrainingCreate = z
  .object({
    name: LoraName,
    images: z
      .string()
      .regex(/^(https?|s3):\/\//i, 'an https:// URL of a .zip or an s3://bucket/prefix (local paths are the CLI\'s)')
      .optional()
      .describe('the dataset: an https:// URL of a .zip or an s3://bucket/prefix; or name an `upload`'),
    upload: UploadId.optional().describe('an upload whose files are the dataset'),
    training: TrainingSettings.extend({ baseModel: TrainingSettings.shape.baseModel.optional().describe('default: the server\'s LORAFLOW_BASE_MODEL') }),
    budget: Budget.optional().describe('most the run may spend on GPU time; a run whose estimate is over it is refused (400, field `budget`) before any GPU job'),
    gpu: z.string().min(1).max(64).optional().describe("pins the run to endpoints of this GPU type (the server's LORAFLOW_ENDPOINTS)"),
    priority: z.int().min(1).max(5).default(3).describe('GPU queue priority, 1 goes first'),
    webhook: z
      .object({
        url: z.string().regex(/^https?:\/\//i, 'an https:// URL (http only on loopback in local development)').max(2000),
        events: z.array(z.enum(WEBHOOK_EVENTS)).min(1).default([...WEBHOOK_EVENTS]),
      })
      .optional()
      .describe('POSTs each event, in order, signed per Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature) with the server\'s LORAFLOW_WEBHOOK_SECRET; retried with backoff until taken'),
  })
  .refine((b) => (b.images === undefined) !== (b.upload === undefined), { message: 'give exactly one of images and upload', path: ['images'] })
  .register(apiSchemas, { id: 'TrainingCreate', description: 'The request `loraflow train` builds, with the dataset as a URL or an upload.' });

export type TrainingCreate = z.infer<typeof TrainingCreate>;

export const ScheduleCreate = z
  .object({
    name: LoraName,
    images: TrainingCreate.shape.images,
    upload: UploadId.optional(),
    training: TrainingCreate.shape.training,
    budget: Budget.optional(),
    cron: z.string().min(1).max(200).describe('when to run, a cron expression in UTC, e.g. "0 3 * * *"'),
    overlap: z.enum(['skip', 'buffer-one', 'allow-all']).default('skip'),
    priority: z.int().min(1).max(5).default(4).describe('GPU queue priority of the scheduled runs, 1 goes first'),
    webhook: TrainingCreate.shape.webhook.describe('every run the schedule starts (scheduled, triggered or backfilled) gets its events POSTed as a training\'s are: in order, signed per Standard Webhooks, retried with backoff until taken'),
  })
  .refine((b) => (b.images === undefined) !== (b.upload === undefined), { message: 'give exactly one of images and upload', path: ['images'] })
  .register(apiSchemas, { id: 'ScheduleCreate', description: 'What `loraflow schedule create` takes: a run retrains only when the dataset changed since the last published version.' });

export const ScheduleId = z.string().regex(/^[A-Za-z0-9._-]{1,200}$/, 'letters, digits, ".", "_" or "-"').register(apiSchemas, { id: 'ScheduleId' });
export const ScheduleList = z.object({ schedules: z.array(z.looseObject({ scheduleId: z.string(), name: z.string(), cron: z.string(), state: z.enum(['active', 'paused']) })) }).register(apiSchemas, { id: 'ScheduleList', description: 'What `loraflow schedule list --json` prints.' });
export const ScheduleDone = z.object({ scheduleId: z.string(), done: z.string() }).register(apiSchemas, { id: 'ScheduleDone' });

export const LoraList = z.object({ loras: z.array(z.object({ name: z.string(), latestVersion: z.string() })) }).register(apiSchemas, { id: 'LoraList' });
export const LoraVersions = z
  .object({ name: z.string(), versions: z.array(z.object({ version: z.string(), sha256: z.string(), bytes: z.number(), steps: z.number().optional(), files: z.array(PresignedFileSchema()) })) })
  .register(apiSchemas, { id: 'LoraVersions', description: 'Every published version of a LoRA, newest first, with presigned URLs of its files.' });

export const TrainingCreated = z
  .object({ id: TrainingId, attached: z.boolean().describe('true: this request (or Idempotency-Key) already had a run, and this is it'), webUi: z.string(), webhooks: z.string().optional().describe('the workflow delivering its webhooks') })
  .register(apiSchemas, { id: 'TrainingCreated' });

export const TrainingEstimate = z
  .object({
    memoryGb: z.number().optional().describe('GPU memory the run needs (arithmetic); absent for a base model of no known family'),
    endpoints: z.array(
      z.object({
        endpointId: z.string(),
        gpu: z.string().optional(),
        pricePerHour: z.number(),
        gpuSeconds: z.number(),
        cost: z.number(),
        source: z.enum(['measured', 'measured-elsewhere', 'default']).describe("where seconds per step come from: earlier runs on this GPU, on another GPU, or loraflow's stated default"),
        samples: z.int().describe('earlier runs measured'),
        withinBudget: z.boolean().optional(),
      }),
    ).describe('each endpoint the run may use, in the order it would try them'),
    skipped: z.array(z.object({ id: z.string(), reason: z.string() })).describe('endpoints it may not use, and why'),
    budget: z.number().optional(),
    refusal: z.string().optional().describe('set when the estimate is over the budget: creating this training is refused'),
  })
  .register(apiSchemas, { id: 'TrainingEstimate', description: 'What a training would cost before it runs (`loraflow train --dry-run`).' });

export const TrainingListQuery = z.object({
  name: LoraName.optional(),
  stage: Stage.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
});

export const TrainingRow = z.object({ workflowId: z.string(), status: z.string(), stage: z.string(), name: z.string(), started: z.string() }).register(apiSchemas, { id: 'TrainingRow' });
export const TrainingList = z.object({ trainings: z.array(TrainingRow) }).register(apiSchemas, { id: 'TrainingList' });

/** What `loraflow status --json` prints (contract/pipeline.ts PipelineProgress, open to new fields). */
export const TrainingStatus = z
  .looseObject({ workflowId: z.string(), status: z.string(), state: z.string(), stage: Stage, name: z.string(), step: z.number().optional(), totalSteps: z.number().optional(), loss: z.number().optional(), gpuState: z.string().optional() })
  .register(apiSchemas, { id: 'TrainingStatus', description: 'The run as `loraflow status --json` shows it; `result` once published, `error` once failed.' });

export const Cancelled = z.object({ id: TrainingId, status: z.string() }).register(apiSchemas, { id: 'Cancelled' });
export const Logs = z.looseObject({ workflowId: z.string(), state: z.string(), jobs: z.array(z.looseObject({ gpuJobId: z.string(), status: z.string() })) }).register(apiSchemas, { id: 'Logs', description: 'What `loraflow logs --json` prints.' });

const PresignedFile = PresignedFileSchema();
export const Download = z
  .object({ id: TrainingId, version: z.string(), sha256: z.string(), bytes: z.number(), files: z.array(PresignedFile) })
  .register(apiSchemas, { id: 'Download', description: 'Short-lived presigned GET URLs of lora.safetensors and metadata.json; check the LoRA against `sha256`.' });
export const Report = z.object({ id: TrainingId, files: z.array(PresignedFile) }).register(apiSchemas, { id: 'Report', description: 'Presigned GET URLs of the report: index.html and its images.' });

export const ProgressEvent = z
  .object({ stage: Stage, state: z.string(), status: z.string(), step: z.number().optional(), totalSteps: z.number().optional(), loss: z.number().optional(), gpuState: z.string().optional() })
  .register(apiSchemas, { id: 'ProgressEvent', description: 'One `progress` server-sent event: sent when anything in it changes; the stream ends after the run closes.' });

export const GenerationCreate = GenerateRequest.register(apiSchemas, {
  id: 'GenerationCreate',
  description: 'What `loraflow generate` builds: `loras[0]` (its version, else latest) holds the images, the others are applied with it at their weights.',
});
export const GenerationCreated = z.object({ id: TrainingId, attached: z.boolean().describe('true: this Idempotency-Key already had a generation, and this is it'), webUi: z.string() }).register(apiSchemas, { id: 'GenerationCreated' });
export const Generation = z
  .object({
    id: TrainingId,
    status: z.string(),
    summary: z.string().optional().describe('the line the Web UI shows'),
    result: z.looseObject({ uri: z.string(), images: z.array(z.looseObject({ prompt: z.number(), seed: z.number(), sha256: z.string(), uri: z.string() })) }).optional(),
    files: z.array(PresignedFileSchema()).optional().describe('presigned GET URLs of every image and the contact sheet, once stored'),
  })
  .register(apiSchemas, { id: 'Generation', description: 'A generation: its status, and once COMPLETED its result (generation.json) and presigned URLs.' });
