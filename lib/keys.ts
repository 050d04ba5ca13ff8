// Where every object lives in the bucket: the one place that spells out loraflow's S3 layout.
// Content-addressed images and manifests are shared by every run; a run's working files live
// under runs/<run key>/, and what is published under loras/<name>/<version>/.

const safeName = (name: string) => name.replace(/[^A-Za-z0-9._-]/g, '_') || '_';

/** A decoded, metadata-stripped image, named by the sha256 of its stored bytes. */
export const imageKey = (sha256: string) => `images/sha256/${sha256}.png`;
/** A dataset manifest, named by its own sha256 (the dataset's identity). */
export const manifestKey = (sha256: string) => `manifests/${sha256}.json`;
/** A captioner's caption of one image, reused by every later run (without the trigger word). */
export const captionCacheKey = (captioner: string, imageSha256: string) => `captions/${safeName(captioner)}/${imageSha256}.txt`;

/** A run's working files: captions, the staged LoRA and samples, claims, checkpoints, its GPU jobs. */
export function runKeys(runKey: string) {
  const prefix = `runs/${runKey}`;
  return {
    prefix,
    captions: `${prefix}/captions.json`,
    stagedLora: `${prefix}/lora.safetensors`,
    sample: (step: number) => `${prefix}/samples/step-${step}.png`,
    trainClaims: `${prefix}/train-claims`,
    checkpoints: `${prefix}/checkpoints`,
    /** One object per GPU job the run submitted (cost, cleanup, `loraflow logs`). */
    gpuJobs: `${prefix}/gpu-jobs`,
    gpuJob: (gpuJobId: string) => `${prefix}/gpu-jobs/${gpuJobId}.json`,
  };
}

/** One published version of a LoRA. */
export function loraKeys(name: string, version: string) {
  const prefix = `loras/${name}/${version}`;
  return {
    prefix,
    lora: `${prefix}/lora.safetensors`,
    metadata: `${prefix}/metadata.json`,
    sample: (step: number) => `${prefix}/samples/step-${step}.png`,
    report: `${prefix}/report`,
  };
}

/** Names the newest published version of a LoRA name and the dataset it was trained on. */
export const latestKey = (name: string) => `loras/${name}/latest.json`;

/** A published version's metadata.json: `loras/<name>/<version>/metadata.json`. */
export const METADATA_KEY = /^loras\/([^/]+)\/([^/]+)\/metadata\.json$/;

/** s3://bucket/key → key */
export const keyOfUri = (uri: string) => uri.replace(/^s3:\/\/[^/]+\//, '');
