// Every setting loraflow reads, in one place, with the local stack's defaults.
// Production points the same variables at RunPod and any S3; see README "Configuration".
import { z } from 'zod';

const Env = z.object({
  LORAFLOW_DATA_DIR: z.string().default('data'),
  TEMPORAL_ADDRESS: z.string().default('127.0.0.1:7233'),
  TEMPORAL_NAMESPACE: z.string().default('default'),
  TEMPORAL_UI_PORT: z.coerce.number().int().default(8233),
  LORAFLOW_TASK_QUEUE: z.string().default('loraflow'),
  LORAFLOW_S3_ENDPOINT: z.url().optional().default('http://127.0.0.1:7070'),
  LORAFLOW_S3_BUCKET: z.string().default('loraflow'),
  /** Create the bucket at worker start (compose's own S3); production buckets already exist. */
  LORAFLOW_CREATE_BUCKET: z.stringbool().default(false),
  AWS_REGION: z.string().default('us-east-1'),
  AWS_ACCESS_KEY_ID: z.string().default('loraflow'),
  AWS_SECRET_ACCESS_KEY: z.string().default('loraflow-local-secret'),
  RUNPOD_API_BASE: z.url().default('http://127.0.0.1:8300/v2'),
  RUNPOD_API_KEY: z.string().default('local-dev-key'),
  RUNPOD_ENDPOINT_ID: z.string().default('local'),
  /** Base model name the GPU worker resolves; the local stack ships `tiny-sd`. */
  LORAFLOW_BASE_MODEL: z.string().default('tiny-sd'),
  /** The captioner the GPU worker runs (the worker reads the same variable): captions cached
   * under this name are reused by later runs instead of being paid for again. */
  LORAFLOW_CAPTIONER: z.string().min(1).default('tiny-captioner'),
  /** Price of one GPU hour of the endpoint's GPU type (RunPod's list price of the card it runs):
   * each run's cost is its jobs' execution time at this price. */
  LORAFLOW_GPU_PRICE_PER_HOUR: z.coerce.number().nonnegative().default(2.49),
  /** How often GPU activities poll RunPod for a job's status. */
  LORAFLOW_POLL_MS: z.coerce.number().int().min(100).default(1000),
  /** Wait for GPU jobs with /status-sync long-polls of this many ms (0: poll every LORAFLOW_POLL_MS).
   * 10 s keeps a running job at 6 status calls a minute and still sees completion at once. */
  LORAFLOW_STATUS_WAIT_MS: z.coerce.number().int().min(0).max(300_000).default(10_000),
  /** GPU workers upload a checkpoint every this many training steps. */
  LORAFLOW_CHECKPOINT_EVERY: z.coerce.number().int().min(1).default(50),
  /** A training job ends its segment (checkpoint, then a fresh job continues) after this long:
   * keep it under the endpoint's execution timeout (RunPod's default is 10 minutes). */
  LORAFLOW_SEGMENT_SECONDS: z.coerce.number().positive().default(480),
  /** Base64 AES-256 key: when set, every workflow payload is encrypted (lib/codec.ts). */
  LORAFLOW_PAYLOAD_KEY: z.string().optional(),
  /** Port of the Web UI's codec endpoint, started by the local stack when a payload key is set. */
  LORAFLOW_CODEC_PORT: z.coerce.number().int().default(8234),
  /** Bearer token the codec endpoint requires, if set. */
  LORAFLOW_CODEC_TOKEN: z.string().optional(),
  /** Let dataset URLs point at loopback or private addresses (local development only). */
  LORAFLOW_ALLOW_PRIVATE_URLS: z.stringbool().default(false),
  /** Activities one Temporal worker runs at once. A waiting GPU stage holds one slot for the whole
   * job, so this bounds how many pipelines can wait on GPUs at the same time (SDK default: 100). */
  LORAFLOW_MAX_ACTIVITIES: z.coerce.number().int().min(1).default(1000),
  RUNPOD_LOCAL_PORT: z.coerce.number().int().default(8300),
  LORAFLOW_S3_PORT: z.coerce.number().int().default(7070),
  TEMPORAL_PORT: z.coerce.number().int().default(7233),
});
export type Config = z.infer<typeof Env>;

/** Reads the environment; a bad value fails with the variable's name. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = Env.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`config: ${issue.path.join('.')}=${JSON.stringify(env[String(issue.path[0])])}: ${issue.message}`);
  }
  return parsed.data;
}
