// Where every object lives in the bucket: the one place that spells out loraflow's S3 layout.
// Content-addressed images and manifests are shared by every run; a run's working files live
// under runs/<workflow id>/<run id>/ (a retried or reset request is a new run with its own claims),
// checkpoints under the training's fingerprint (any run of the same training resumes from them),
// and what is published under loras/<name>/<version>/.

const safeName = (name: string) => name.replace(/[^A-Za-z0-9._-]/g, '_') || '_';

/** A validated, metadata-stripped image (JPEG, PNG or WebP), named by the sha256 of its stored bytes. */
export const imageKey = (sha256: string, format: 'jpeg' | 'png' | 'webp') => `images/sha256/${sha256}.${format === 'jpeg' ? 'jpg' : format}`;
/** A dataset manifest, named by its own sha256 (the dataset's identity). */
export const manifestKey = (sha256: string) => `manifests/${sha256}.json`;
/** A captioner's caption of one image, reused by every later run (without the trigger word). */
export const captionCacheKey = (captioner: string, imageSha256: string) => `captions/${safeName(captioner)}/${imageSha256}.txt`;

/** An image's cached encodings (VAE latents, caption conditioning), named by encodingId (activities/encodings.ts). */
export const encodingKey = (id: string) => `encodings/${id}.safetensors`;

/** One run of a workflow: `<workflow id>/<run id>`, the key all of the run's working files hang off. */
export const runKeyOf = (workflowId: string, runId: string) => `${workflowId}/${runId}`;

export type GpuStage = 'caption' | 'train' | 'generate';

/** A run's working files: captions, its GPU jobs' records, and each stage generation's files. */
export function runKeys(runKey: string) {
  const prefix = `runs/${runKey}`;
  return {
    prefix,
    captions: `${prefix}/captions.json`,
    /** One record per GPU job the run submitted or followed (cost, cleanup, `loraflow logs`). */
    gpuJobs: `${prefix}/gpu-jobs`,
    gpuJob: (gpuJobId: string) => `${prefix}/gpu-jobs/${gpuJobId}.json`,
    /** One submission of a stage's work: its claim, attempt markers, result and (train) outputs. */
    generation(stage: GpuStage, generation: number) {
      const g = `${prefix}/${stage}/${generation}`;
      return {
        prefix: g,
        claim: `${g}/claim.json`,
        attempt: (k: number) => `${g}/attempt-${k}.json`,
        result: `${g}/result.json`,
        lora: `${g}/lora.safetensors`,
        /** The finished training's last state (checkpoint.finalUrl). */
        finalCheckpoint: `${g}/final.ckpt`,
        sample: (step: number, prompt = 0) => `${g}/samples/step-${step}-${prompt}.png`,
        save: (step: number) => `${g}/steps/lora-step${step}.safetensors`,
        image: (k: number) => `${g}/images/${k}.png`,
        contactSheet: `${g}/contact-sheet.png`,
      };
    },
  };
}

/** Checkpoints of one training (its fingerprint: images, captions, base model and parameters). */
export const checkpointsOf = (fingerprint: string) => `checkpoints/${fingerprint}`;
export const checkpointKey = (fingerprint: string, runKey: string, generation: number) => `${checkpointsOf(fingerprint)}/${safeName(runKey.replace('/', '.'))}.${generation}.ckpt`;

/** GPU jobs that may still run, whatever happened to the run that made them (the janitor's list). */
export const OPEN_GPU_JOBS = 'gpu-jobs-open';
export const openGpuJobKey = (gpuJobId: string) => `${OPEN_GPU_JOBS}/${safeName(gpuJobId)}.json`;

/** One published version of a LoRA. */
export function loraKeys(name: string, version: string) {
  const prefix = `loras/${name}/${version}`;
  return {
    prefix,
    lora: `${prefix}/lora.safetensors`,
    metadata: `${prefix}/metadata.json`,
    /** The captions it was trained on (image id → caption). */
    captions: `${prefix}/captions.json`,
    /** Its training's final checkpoint: `loraflow extend` continues from it. */
    checkpoint: `${prefix}/checkpoint.ckpt`,
    /** The first prompt's keeps the plain name (the Hub push and older versions use it). */
    sample: (step: number, prompt = 0) => `${prefix}/samples/step-${step}${prompt ? `-p${prompt}` : ''}.png`,
    /** An intermediate LoRA (saveEvery), and after a promote the final one's copy. */
    stepLora: (step: number) => `${prefix}/lora-step${step}.safetensors`,
    report: `${prefix}/report`,
  };
}

/** One generation's images under the LoRA version they were made with (GenerationResult). */
export function generationKeys(name: string, version: string, id: string) {
  const prefix = `${loraKeys(name, version).prefix}/generations/${safeName(id)}`;
  return {
    prefix,
    image: (prompt: number, seed: number) => `${prefix}/prompt${prompt}-seed${seed}.png`,
    contactSheet: `${prefix}/contact-sheet.png`,
    record: `${prefix}/generation.json`,
  };
}

/** Names the newest published version of a LoRA name and the dataset it was trained on. */
export const latestKey = (name: string) => `loras/${name}/latest.json`;

/** A published version's metadata.json: `loras/<name>/<version>/metadata.json`. */
export const METADATA_KEY = /^loras\/([^/]+)\/([^/]+)\/metadata\.json$/;

/** The top-level prefixes loraflow itself writes: never a dataset source (they hold other runs'
 * images, checkpoints and claims). */
export const INTERNAL_PREFIXES = ['images/', 'manifests/', 'captions/', 'encodings/', 'runs/', 'checkpoints/', `${OPEN_GPU_JOBS}/`, 'loras/', 'loraflow-probe/', 'gateway-jobs/', 'webhooks/', 'webhook-schedules/'] as const;

/** What the RunPod-shaped gateway answered for a job that finished at once (api/gateway/jobs.ts). */
export const gatewayJobKey = (jobId: string) => `gateway-jobs/${safeName(jobId)}.json`;

/** A training's webhook (URL and events), written by the API; and each delivery's outcome. */
export const webhookConfigKey = (trainingId: string) => `webhooks/${safeName(trainingId)}/config.json`;
/** Named through safeName like the keys in it: a scheduled run's id has ':' in its time. */
export const webhookDeliveriesPrefix = (trainingId: string) => `webhooks/${safeName(trainingId)}/deliveries/`;
export const webhookDeliveryKey = (trainingId: string, seq: number) => `${webhookDeliveriesPrefix(trainingId)}${String(seq).padStart(6, '0')}.json`;

/** A schedule's webhook, written by the API: copied to each run's webhookConfigKey as the run is seen.
 * A prefix of its own, so no schedule id can collide with a training id's keys. */
export const scheduleWebhookKey = (scheduleId: string) => `webhook-schedules/${safeName(scheduleId)}/config.json`;

/** s3://bucket/key → key */
export const keyOfUri = (uri: string) => uri.replace(/^s3:\/\/[^/]+\//, '');
