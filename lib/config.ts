// Every setting loraflow reads, in one place, with the local stack's defaults.
// Production points the same variables at RunPod and any S3; see README "Configuration".
import { z } from 'zod';

const emptyToUndefined = (v: unknown) => (v === '' ? undefined : v);

/** "H100=4.18,A100 80GB=2.72" → { H100: 4.18, "A100 80GB": 2.72 }; a bad entry names itself. */
export function parseGpuPrices(text: string): Record<string, number> {
  const prices: Record<string, number> = {};
  for (const entry of text.split(',').map((e) => e.trim()).filter(Boolean)) {
    const m = /^(.+?)\s*=\s*(\d+(?:\.\d+)?)$/.exec(entry);
    if (!m) throw new Error(`"${entry}": expected GPU=price per hour, e.g. H100=4.18`);
    prices[m[1]!] = Number(m[2]);
  }
  return prices;
}

/** A Hugging Face user, organisation or repo name. */
const HubName = z.string().max(96).regex(/^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/, 'letters, digits, ".", "_" or "-", not at either end');
export const DEFAULT_HF_BASE_MODELS =
  'sd15=stable-diffusion-v1-5/stable-diffusion-v1-5,sdxl=stabilityai/stable-diffusion-xl-base-1.0,flux-dev=black-forest-labs/FLUX.1-dev';

/** Variables whose values a config error must not print. */
const SECRETS = new Set(['AWS_SECRET_ACCESS_KEY', 'RUNPOD_API_KEY', 'HF_TOKEN', 'LORAFLOW_PAYLOAD_KEY', 'LORAFLOW_CODEC_TOKEN']);

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
  /** Price of one GPU hour for GPUs not listed in LORAFLOW_GPU_PRICES (and for CPU workers):
   * each run's cost is its jobs' execution time at their GPU's price. */
  LORAFLOW_GPU_PRICE_PER_HOUR: z.coerce.number().nonnegative().default(2.49),
  /** Price per hour by GPU type, matched (case-insensitively) against the device each job reports:
   * "H100=4.18,A100=2.72,L40S=1.90". GPUs not listed cost LORAFLOW_GPU_PRICE_PER_HOUR. */
  LORAFLOW_GPU_PRICES: z
    .string()
    .default('')
    .transform((text, ctx) => {
      try {
        return parseGpuPrices(text);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    }),
  /** The endpoint's GPU type (e.g. "H100"): prices a job that reports no device, and budget checks. */
  LORAFLOW_GPU_TYPE: z.preprocess(emptyToUndefined, z.string().optional()),
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
  /** GPU jobs one Temporal worker keeps on the endpoint at once: further GPU stages wait in
   * Temporal's queue (in priority order) instead of flooding the endpoint. */
  LORAFLOW_MAX_GPU_JOBS: z.coerce.number().int().min(1).default(10),
  /** host:port where the worker serves Prometheus metrics (`/metrics`): Temporal's worker metrics and
   * loraflow_pipeline_runs_total{outcome,trigger,lora}. Empty: off. The local stack serves it on
   * LORAFLOW_METRICS_PORT. */
  LORAFLOW_METRICS_ADDRESS: z.string().regex(/^[^:\s]+:\d+$/, 'expected host:port').optional(),
  LORAFLOW_METRICS_PORT: z.coerce.number().int().default(9464),
  /** Hugging Face token with write access: when set, published LoRAs can be pushed to the Hub
   * (activities/hub.ts). Empty means unset. */
  HF_TOKEN: z.preprocess(emptyToUndefined, z.string().regex(/^hf_\S+$/, 'a Hugging Face access token starts with "hf_"').optional()),
  /** The user or organisation the Hub repos belong to; unset: the token's own user (whoami). */
  LORAFLOW_HF_NAMESPACE: z.preprocess(emptyToUndefined, HubName.optional()),
  /** Repo id template, `{name}` being the LoRA name, e.g. `my-org/loraflow-{name}`
   * (default `<LORAFLOW_HF_NAMESPACE>/{name}`): one Hub repo per LoRA name, one commit per version. */
  LORAFLOW_HF_REPO: z.preprocess(
    emptyToUndefined,
    z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9._{}-]*\{name\}[A-Za-z0-9._{}-]*$/, 'expected "<namespace>/<repo>" containing {name}, e.g. "my-org/loraflow-{name}"')
      .optional(),
  ),
  /** Create Hub repos private (existing repos keep their visibility). */
  LORAFLOW_HF_PRIVATE: z.stringbool().default(true),
  /** The Hub's address: a mirror or an Enterprise Hub instead of the public one. */
  LORAFLOW_HF_ENDPOINT: z
    .url({ protocol: /^https?$/ })
    .refine((u) => !new URL(u).username && !new URL(u).password, 'no credentials in the URL: the token is HF_TOKEN')
    .transform((u) => u.replace(/\/+$/, ''))
    .default('https://huggingface.co'),
  /** Hub model ids of the GPU worker's base model names, for the model card's `base_model`:
   * `name=org/repo` pairs, comma-separated. The defaults are Dockerfile.gpu's documented builds. */
  LORAFLOW_HF_BASE_MODELS: z
    .string()
    .default(DEFAULT_HF_BASE_MODELS)
    .transform((s, ctx) => {
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
    }),
  RUNPOD_LOCAL_PORT: z.coerce.number().int().default(8300),
  LORAFLOW_S3_PORT: z.coerce.number().int().default(7070),
  TEMPORAL_PORT: z.coerce.number().int().default(7233),
});
export type Config = z.infer<typeof Env>;
/** Every variable loraflow reads (the compose test checks the worker's environment against it). */
export const CONFIG_VARIABLES = Object.keys(Env.shape);

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
