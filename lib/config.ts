// Every setting loraflow reads, in one place, with the local stack's defaults and what each does.
// docs/configuration.md is generated from this schema (`npm run docs`; a test fails on drift), and
// activities/deps.ts maps it to the activities' dependencies: nothing else reads these variables.
import { z } from 'zod';
import { type EndpointSpec, parseEndpoints } from './endpoints.js';
import { parseGpuPrices } from './pricing.js';
import { parseFamilies } from '../contract/families.js';

const emptyToUndefined = (v: unknown) => (v === '' ? undefined : v);
const optional = <T extends z.ZodType>(schema: T) => z.preprocess(emptyToUndefined, schema.optional());
const port = (value: number) => z.coerce.number().int().min(0).max(65_535).default(value);

/** A Hugging Face user, organisation or repo name. */
const HubName = z.string().max(96).regex(/^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/, 'letters, digits, ".", "_" or "-", not at either end');
const DEFAULT_HF_BASE_MODELS =
  'sd15=stable-diffusion-v1-5/stable-diffusion-v1-5,sdxl=stabilityai/stable-diffusion-xl-base-1.0,flux-dev=black-forest-labs/FLUX.1-dev';

/** Variables whose values a config error must not print. */
const SECRETS = new Set(['AWS_SECRET_ACCESS_KEY', 'RUNPOD_API_KEY', 'HF_TOKEN', 'LORAFLOW_PAYLOAD_KEY', 'LORAFLOW_CODEC_TOKEN', 'TEMPORAL_API_KEY', 'LORAFLOW_API_TOKENS', 'LORAFLOW_WEBHOOK_SECRET']);

/** `name=org/repo,…` pairs. */
const hubModelMap = (fallback: string) => z.string().default(fallback).transform((s, ctx) => {
  const map: Record<string, string> = {};
  for (const pair of s.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^([A-Za-z0-9._-]+)=([A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*)$/.exec(pair);
    if (!m) {
      ctx.addIssue({ code: 'custom', message: `"${pair}" is not name=org/repo` });
      return z.NEVER;
    }
    map[m[1]!] = m[2]!;
  }
  return map;
});

const gpuPriceTable = (fallback: string) => z.string().default(fallback).transform((text, ctx) => {
  try {
    return parseGpuPrices(text);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

const endpointList = z.preprocess(emptyToUndefined, z.string().optional()).transform((text, ctx) => {
  if (text === undefined) return undefined;
  try {
    return parseEndpoints(text);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

/** Each variable with its default and a description (the docs table's "what" column). */
const Env = z.object({
  // --- where things are ---------------------------------------------------------------------
  LORAFLOW_DATA_DIR: z.string().default('data').describe('local stack state (Temporal SQLite file, S3 directory) and logs'),
  TEMPORAL_ADDRESS: z.string().default('127.0.0.1:7233').describe('Temporal frontend `host:port`'),
  TEMPORAL_NAMESPACE: z.string().default('default').describe('Temporal namespace'),
  TEMPORAL_TLS: z.stringbool().default(false).describe('connect to Temporal over TLS (implied by the TLS files and TEMPORAL_API_KEY below)'),
  TEMPORAL_TLS_CERT: optional(z.string()).describe('client certificate (PEM file) for mTLS to a self-hosted Temporal; with TEMPORAL_TLS_KEY'),
  TEMPORAL_TLS_KEY: optional(z.string()).describe('the client certificate\'s private key (PEM file)'),
  TEMPORAL_TLS_CA: optional(z.string()).describe("CA certificate (PEM file) the Temporal server's certificate must chain to; unset: the system's roots"),
  TEMPORAL_TLS_SERVER_NAME: optional(z.string()).describe("the name the Temporal server's certificate must carry, when it is not TEMPORAL_ADDRESS's host"),
  TEMPORAL_API_KEY: optional(z.string()).describe('API key sent as a bearer token on every Temporal call (Temporal Cloud, or a self-hosted authorizer); never logged'),
  LORAFLOW_TASK_QUEUE: z.string().default('loraflow').describe('task queue of the pipelines; their GPU stages use `<queue>-gpu`'),
  LORAFLOW_S3_ENDPOINT: z.url().default('http://127.0.0.1:7070').describe('S3 endpoint (path-style addressing; any S3-compatible store)'),
  LORAFLOW_S3_BUCKET: z.string().default('loraflow').describe('the bucket that holds every byte'),
  LORAFLOW_CREATE_BUCKET: z.stringbool().default(false).describe("create the bucket when the worker starts (compose's own S3; production buckets already exist)"),
  LORAFLOW_S3_TIMEOUT_MS: z.coerce.number().int().min(1000).default(30_000).describe('an S3 request without progress this long fails (and is retried): a store that stops answering cannot hang a stage'),
  AWS_REGION: z.string().default('us-east-1').describe('S3 region'),
  AWS_ACCESS_KEY_ID: z.string().default('loraflow').describe('S3 access key (the default is the local stack\'s)'),
  AWS_SECRET_ACCESS_KEY: z.string().default('loraflow-local-secret').describe('S3 secret key (the default is the local stack\'s)'),
  RUNPOD_API_BASE: z.url().default('http://127.0.0.1:8300/v2').describe('RunPod API (`https://api.runpod.ai/v2` in production)'),
  RUNPOD_API_KEY: z.string().default('local-dev-key').describe('RunPod API key (the default is the local endpoint\'s)'),
  RUNPOD_ENDPOINT_ID: z.string().default('local').describe('the serverless endpoint running the GPU worker (`Dockerfile.gpu`)'),
  LORAFLOW_ENDPOINTS: endpointList.describe(
    '`id:GPU type:memory GB[:price per hour],…` (e.g. `ab12:RTX 4090:24:0.69,cd34:A100 80GB:80`): serverless endpoints in order of preference, all running the GPU worker; a GPU stage goes to the first whose GPU fits the run and moves on when its job waits too long for capacity; unset: `RUNPOD_ENDPOINT_ID` with `LORAFLOW_GPU_TYPE` alone',
  ),
  LORAFLOW_ENDPOINT_QUEUE_WAIT_SECONDS: z.coerce
    .number()
    .positive()
    .default(600)
    .describe("a GPU job still queued for capacity after this long is cancelled (it never ran) and resubmitted to the next endpoint of `LORAFLOW_ENDPOINTS`; the last one is waited on"),
  RUNPOD_REST_BASE: z
    .url()
    .default('http://127.0.0.1:8300/rest')
    .describe("RunPod's REST API (`https://api.runpod.io` in production): the endpoint's max workers and its workers' states, for honest status"),

  // --- what is trained ----------------------------------------------------------------------
  LORAFLOW_BASE_MODEL: z.string().default('tiny-sd').describe('base model name the GPU worker resolves when `--base-model` is not given'),
  LORAFLOW_BASE_MODEL_FAMILIES: z
    .string()
    .default('')
    .transform((text, ctx) => {
      try {
        return parseFamilies(text);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    })
    .describe("`base model=sd|sdxl|flux,…` for models whose name does not say their family (names with `flux` are FLUX, with `sdxl` or `-xl-` SDXL, others SD): picks the steps, rank and learning-rate defaults"),
  LORAFLOW_CAPTIONER: z
    .string()
    .min(1)
    .default('tiny-captioner')
    .describe('the captioner the GPU worker runs (it reads the same variable); captions cached under this name are reused instead of paid for again'),

  // --- GPU jobs -----------------------------------------------------------------------------
  LORAFLOW_POLL_MS: z.coerce.number().int().min(100).default(1000).describe('GPU status poll interval when long-polls are off'),
  LORAFLOW_STATUS_WAIT_MS: z.coerce
    .number()
    .int()
    .min(0)
    .max(90_000)
    .default(10_000)
    .describe('wait for GPU jobs with `/status-sync` long-polls of this length (0: poll): completion is seen at once, a running job costs about 6 status calls a minute, progress refreshes at this pace'),
  LORAFLOW_STATUS_SHARE: z.coerce
    .number()
    .gt(0)
    .max(1)
    .default(0.75)
    .describe("share of each endpoint's status limits (RunPod allows 2,000 requests per 10 s and 400 at once, a held long-poll counting) that one worker process spends watching its GPU jobs: 0.75 is 136 requests/s (under 150 in any second) and 300 at once per endpoint; the limits are the endpoint's, so with several worker processes on one endpoint give each its part (e.g. 0.3 each for 3; docs/operations.md)"),
  LORAFLOW_RUNPOD_WEBHOOK_URL: optional(
    z
      .url({ protocol: /^https?$/ })
      .refine((u) => !new URL(u).searchParams.has('key'), 'the worker adds its own `key` parameter'),
  ).describe(
    "URL at which RunPod reaches this worker's completion webhook (e.g. `https://gpu-worker-1.example.com/runpod-webhook`): every GPU job names it with a key of the process's own, and its POST has the job's status asked at once instead of at its turn; unset: ends are seen by polling alone (lib/completion-webhook.ts)",
  ),
  LORAFLOW_RUNPOD_WEBHOOK_LISTEN: z
    .string()
    .regex(/^(\[[^\]]+\]|[^:\s]*):\d{1,5}$/, 'expected host:port')
    .default('0.0.0.0:8790')
    .describe('`host:port` the completion webhook is served on, at the path of LORAFLOW_RUNPOD_WEBHOOK_URL (only when that is set)'),
  LORAFLOW_CHECKPOINT_EVERY: z.coerce.number().int().min(1).default(50).describe('training steps between checkpoints: at most this many steps are redone after a lost GPU worker'),
  LORAFLOW_ENCODING_CACHE: z
    .stringbool()
    .default(true)
    .describe("keep each image's VAE latents and caption encoding in S3 (`encodings/`): later segments and retrains on the same images skip their download and encoding"),
  LORAFLOW_SEGMENT_SECONDS: z.coerce
    .number()
    .positive()
    .default(3600)
    .describe('a training job checkpoints and hands over to a fresh job after training this long (counted from its first step)'),
  LORAFLOW_JOB_SETUP_SECONDS: z.coerce
    .number()
    .positive()
    .default(900)
    .describe("time a GPU job may spend before its first step (download, model load, caching): each job's `policy.executionTimeout` is the segment plus this plus 5 minutes, whatever the endpoint's default"),
  LORAFLOW_GPU_JOB_ATTEMPTS: z.coerce
    .number()
    .int()
    .min(1)
    .max(20)
    .default(5)
    .describe('how often one GPU job may be started (the service retries a job whose worker died): beyond this it fails as CRASHED'),
  LORAFLOW_JANITOR_MINUTES: z.coerce
    .number()
    .min(0)
    .default(10)
    .describe("every this many minutes the janitor schedule cancels GPU jobs whose run has closed (terminated runs skip their own cleanup); 0: the worker does not create it"),
  LORAFLOW_MAX_GPU_JOBS: z.coerce.number().int().min(1).default(10).describe('GPU jobs kept on each endpoint at once, by all Temporal workers together (a lease workflow per endpoint counts them); more GPU stages wait'),
  LORAFLOW_MAX_ACTIVITIES: z.coerce
    .number()
    .int()
    .min(1)
    .default(1000)
    .describe('activities one Temporal worker runs at once (each waiting GPU stage holds one)'),
  LORAFLOW_MAX_CACHED_WORKFLOWS: optional(z.coerce.number().int().min(0)).describe(
    "workflows one Temporal worker keeps in memory between their tasks (unset: the SDK's default, sized from the machine's memory); fewer saves about 0.13 MiB each, and an evicted one is replayed when it next wakes",
  ),

  // --- what it costs ------------------------------------------------------------------------
  LORAFLOW_GPU_PRICE_PER_HOUR: z.coerce.number().nonnegative().default(2.49).describe('price of one GPU hour for GPUs not in `LORAFLOW_GPU_PRICES` (and CPU workers)'),
  LORAFLOW_GPU_PRICES: gpuPriceTable('').describe('`GPU=price per hour,…` (e.g. `H100=4.18,A100=2.72`), matched case-insensitively against the device each job reports'),
  LORAFLOW_GPU_TYPE: optional(z.string()).describe("the endpoint's GPU type: prices jobs that report no device, and running jobs for `--budget`"),

  // --- security -----------------------------------------------------------------------------
  LORAFLOW_ALLOW_PRIVATE_URLS: z
    .stringbool()
    .default(false)
    .describe('let dataset URLs point at loopback or private addresses, and use plain http:// on loopback (local development only)'),
  LORAFLOW_DATASET_ROOTS: z
    .string()
    .default('~,$TMPDIR,.')
    .describe(
      'comma-separated directories local datasets (a directory or .zip on the worker\'s machine) may be read from, symlinks resolved; `~` is the home directory, `$TMPDIR` the system temp directory, `.` the worker\'s working directory (the repo for the local stack); `none`: no local datasets (an API worker)',
    ),
  LORAFLOW_DATASET_BUCKETS: optional(z.string().regex(/^[a-z0-9.,\s-]+$/, 'comma-separated bucket names')).describe(
    "comma-separated buckets `s3://` datasets may come from; unset: only `LORAFLOW_S3_BUCKET`, outside loraflow's own prefixes (which are never a dataset source)",
  ),
  LORAFLOW_DATASET_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(100).default(10_000).describe('a dataset URL whose server does not accept the connection this soon fails (and is retried)'),
  LORAFLOW_DATASET_READ_TIMEOUT_MS: z.coerce.number().int().min(100).default(30_000).describe('a dataset download that receives no byte for this long fails (and is retried)'),
  LORAFLOW_DATASET_MAX_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(2 * 2 ** 30)
    .describe('the most a dataset .zip downloaded from a URL may be, enforced while streaming'),
  LORAFLOW_PAYLOAD_KEY: optional(z.string()).describe('base64 AES-256 key (`openssl rand -base64 32`): encrypt every workflow payload'),
  LORAFLOW_CODEC_PORT: port(8234).describe("port of the Web UI's codec endpoint (local stack, when a payload key is set)"),
  LORAFLOW_CODEC_TOKEN: optional(z.string()).describe('bearer token the codec endpoint requires'),
  LORAFLOW_API_TOKENS: optional(z.string().regex(/^\s*sha256:[0-9a-f]{64}\s*(,\s*sha256:[0-9a-f]{64}\s*)*$/, 'comma-separated "sha256:<64 hex digits>" (`printf %s TOKEN | sha256sum`)')).describe(
    "sha256 hashes of the bearer tokens `loraflow serve` accepts, `sha256:<hex>,…` (the tokens themselves are never stored); unset: the local stack accepts `local-dev-token`, a standalone `serve` refuses to start",
  ),

  // --- operations ---------------------------------------------------------------------------
  LORAFLOW_LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info').describe('log level of the Temporal worker (JSON lines, secrets redacted)'),
  LORAFLOW_METRICS_ADDRESS: optional(z.string().regex(/^[^:\s]+:\d+$/, 'expected host:port')).describe("`host:port` of the worker's Prometheus `/metrics`; unset: off"),
  LORAFLOW_BUILD_ID: optional(z.string().regex(/^[A-Za-z0-9._-]{1,255}$/, 'letters, digits, ".", "_" or "-"')).describe(
    'turns on Worker Versioning: this worker polls as build `<LORAFLOW_DEPLOYMENT_NAME>:<id>` and runs started on it stay pinned to it (docs/operations.md)',
  ),
  LORAFLOW_DEPLOYMENT_NAME: z.string().regex(/^[A-Za-z0-9._-]{1,255}$/).default('loraflow').describe('the worker deployment a versioned worker belongs to'),

  LORAFLOW_WEBHOOK_SECRET: optional(z.string().regex(/^whsec_[A-Za-z0-9+/=]{24,}$/, 'a Standard Webhooks secret: "whsec_" and base64 (`echo whsec_$(openssl rand -base64 32)`)')).describe(
    'signs training webhooks (Standard Webhooks); the worker signs, receivers verify with the same secret; unset: trainings and schedules with a webhook are refused',
  ),
  LORAFLOW_WEBHOOK_PROGRESS_SECONDS: z.coerce.number().min(1).default(30).describe('at most one `training.progress` webhook per run this often (stage changes and the outcome are always sent)'),
  LORAFLOW_API_HOST: z.string().default('127.0.0.1').describe('address `loraflow serve` binds to: loopback unless set (e.g. `0.0.0.0` behind a TLS proxy)'),
  LORAFLOW_API_PORT: port(8400).describe('port of `loraflow serve` (the HTTP API and the RunPod-shaped gateway)'),
  LORAFLOW_API_MAX_BODY_BYTES: z.coerce.number().int().min(1024).default(1024 * 1024).describe('largest request body the `/v1` API reads (images go by presigned upload URLs, never through the API)'),
  LORAFLOW_API_URL_SECONDS: z.coerce.number().int().min(60).max(7 * 86_400).default(3600).describe('lifetime of the presigned upload and download URLs the API hands out'),

  // --- Hugging Face Hub ---------------------------------------------------------------------
  HF_TOKEN: optional(z.string().regex(/^hf_\S+$/, 'a Hugging Face access token starts with "hf_"')).describe(
    'Hugging Face token with write access: enables `pushToHub` (never logged)',
  ),
  LORAFLOW_HF_NAMESPACE: optional(HubName).describe("the user or organisation of the Hub repos; unset: the token's own user"),
  LORAFLOW_HF_REPO: optional(
    z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9._{}-]*\{name\}[A-Za-z0-9._{}-]*$/, 'expected "<namespace>/<repo>" containing {name}, e.g. "my-org/loraflow-{name}"'),
  ).describe('repo id template containing `{name}`, e.g. `my-org/loraflow-{name}` (default `<namespace>/{name}`)'),
  LORAFLOW_HF_PRIVATE: z.stringbool().default(true).describe('create Hub repos private'),
  LORAFLOW_HF_ENDPOINT: z
    .url({ protocol: /^https?$/ })
    .refine((u) => !new URL(u).username && !new URL(u).password, 'no credentials in the URL: the token is HF_TOKEN')
    .transform((u) => u.replace(/\/+$/, ''))
    .default('https://huggingface.co')
    .describe('the Hub, a mirror or an Enterprise Hub'),
  LORAFLOW_HF_BASE_MODELS: hubModelMap(DEFAULT_HF_BASE_MODELS).describe("`name=org/repo,…`: the model card's `base_model` for the GPU worker's model names (the defaults are `Dockerfile.gpu`'s documented builds)"),

  // --- the local stack ----------------------------------------------------------------------
  TEMPORAL_PORT: port(7233).describe('local stack: Temporal frontend port'),
  TEMPORAL_UI_PORT: port(8233).describe('local stack: Temporal Web UI port (links printed by the CLI use it too)'),
  LORAFLOW_S3_PORT: port(7070).describe('local stack: S3 (versitygw) port'),
  RUNPOD_LOCAL_PORT: port(8300).describe('local stack: local RunPod endpoint port'),
  LORAFLOW_METRICS_PORT: port(9464).describe("local stack: port of the worker's `/metrics`"),
});
export type Config = z.infer<typeof Env>;
/** Every variable loraflow reads (the compose test checks the worker's environment against it). */
export const CONFIG_VARIABLES = Object.keys(Env.shape);

/** LORAFLOW_ENDPOINTS, else the one endpoint RUNPOD_ENDPOINT_ID (GPU type LORAFLOW_GPU_TYPE, memory not stated). */
export const endpointSpecs = (config: Pick<Config, 'LORAFLOW_ENDPOINTS' | 'RUNPOD_ENDPOINT_ID' | 'LORAFLOW_GPU_TYPE'>): EndpointSpec[] =>
  config.LORAFLOW_ENDPOINTS ?? [{ id: config.RUNPOD_ENDPOINT_ID, ...(config.LORAFLOW_GPU_TYPE ? { gpu: config.LORAFLOW_GPU_TYPE } : {}) }];

/** Reads the environment; a bad value fails with the variable's name. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = Env.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const name = String(issue.path[0]);
    const value = SECRETS.has(name) ? '<redacted>' : JSON.stringify(env[name])?.replace(/\/\/[^/@\s]*@/, '//<redacted>@');
    throw new Error(`config: ${issue.path.join('.')}=${value}: ${issue.message}`);
  }
  return parsed.data;
}

/** Name, default (as written in the environment) and description of every variable, for the docs. */
export function describeConfig(): { name: string; default?: string; description: string; secret: boolean }[] {
  const input = z.toJSONSchema(Env, { io: 'input', unrepresentable: 'any' }) as { properties: Record<string, { default?: unknown }> };
  return Object.entries(Env.shape).map(([name, schema]) => {
    // The input side's default (what one would write in the environment); a boolean's is its value.
    const def = (schema as unknown as { _zod: { def: { type: string; defaultValue?: unknown } } })._zod.def;
    const fallback = input.properties[name]?.default ?? (def.type === 'default' ? def.defaultValue : undefined);
    return {
      name,
      ...(fallback !== undefined ? { default: String(fallback) } : {}),
      description: (schema as z.ZodType).description ?? '',
      secret: SECRETS.has(name),
    };
  });
}
