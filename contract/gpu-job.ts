// The one contract between the TypeScript orchestrator and the Python GPU worker.
// `npm run contract` turns these schemas into contract/schema/*.json, which the
// worker validates against; a test fails when the committed files drift.
import { z } from 'zod';
import { FAMILY_DEFAULTS } from './families.js';

export const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected a lowercase hex sha256');

/** Trigger words end up in every caption: one token-ish word, no spaces. */
export const TriggerWord = z
  .string()
  .min(2)
  .max(40)
  .regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, "_" or "-" only');

/** A step number as a JSON object key. */
const StepKey = z.string().regex(/^[1-9]\d*$/);
export const MAX_SAMPLE_PROMPTS = 8;
export const SamplePrompt = z.string().min(1).max(500);
/** See TrainJobInput.filesTag. */
export const FilesTag = z.string().min(1).max(300);

/** An image the worker fetches by presigned GET; `id` is its content sha256. */
export const ImageRef = z.object({ id: Sha256, url: z.url() });

/** Defaults, shared with the CLI's --help so it stays true. Steps, rank and learning rate are the
 * base model family's (contract/families.ts, applied when a request is built); SD's are the fallback
 * of a bare parse. */
export const TRAINING_DEFAULTS = { ...FAMILY_DEFAULTS.sd, batchSize: 1, seed: 42 } as const;
const BY_FAMILY = "default: the base model family's (contract/families.ts)";

export const TrainingParams = z.object({
  steps: z.int().min(1).max(100_000).default(TRAINING_DEFAULTS.steps).describe(BY_FAMILY),
  rank: z.int().min(1).max(256).default(TRAINING_DEFAULTS.rank).describe(BY_FAMILY),
  /** LoRA alpha; defaults to the rank (scale 1.0). */
  alpha: z.number().positive().max(1024).optional(),
  learningRate: z.number().positive().max(1).default(TRAINING_DEFAULTS.learningRate).describe(BY_FAMILY),
  batchSize: z.int().min(1).max(64).default(TRAINING_DEFAULTS.batchSize),
  /** Square training size in pixels; absent means the base model's native size. */
  resolution: z.int().min(32).max(2048).multipleOf(8).optional(),
  seed: z.int().min(0).max(2 ** 31 - 1).default(TRAINING_DEFAULTS.seed),
  lrScheduler: z.enum(['constant', 'constant_with_warmup', 'linear', 'cosine']).default('constant'),
  warmupSteps: z.int().min(0).max(100_000).default(0),
  gradientAccumulation: z.int().min(1).max(64).default(1),
  /** auto: bf16 on a GPU that supports it (else fp16), fp32 on CPU. */
  mixedPrecision: z.enum(['auto', 'no', 'fp16', 'bf16']).default('auto'),
  /** Absent: on for SDXL and FLUX at 1024 px and above (their activations outgrow the GPU), else off. */
  gradientCheckpointing: z.boolean().optional(),
  /** Keep each image's aspect ratio by grouping images into buckets of about resolution² pixels. */
  aspectBuckets: z.boolean().default(false),
  // Absent: the base model family's default (gpu-worker/families/options.py); an option the
  // family does not have is an INPUT error.
  /** FLUX: logit_normal (default), uniform or shift (sd-scripts' flux_shift); SD/SDXL: uniform only. */
  timestepSampling: z.enum(['logit_normal', 'uniform', 'shift']).optional(),
  /** SD/SDXL: min-SNR loss weighting gamma (5 is the paper's value); absent: off. */
  snrGamma: z.number().positive().max(100).optional(),
  /** SD/SDXL: noise offset (e.g. 0.05); absent: 0. */
  noiseOffset: z.number().min(0).max(1).optional(),
  /** Probability that an image trains with the empty caption; absent: 0. */
  captionDropout: z.number().min(0).max(0.9).optional(),
  /** Also train on each image mirrored left-right (its latents are cached both ways). */
  flipHorizontal: z.boolean().optional(),
  /** Keep the frozen denoiser's weights quantized (torchao, weight-only): int8 anywhere, fp8 on Ada or
   * Hopper GPUs. FLUX's transformer then takes 12 GB instead of 24 GB and trains on 24 GB cards; the
   * LoRA applies to the unquantized base. Absent: not quantized. */
  quantizeBase: z.enum(['int8', 'fp8']).optional(),
});
export type TrainingParams = z.infer<typeof TrainingParams>;

/**
 * A job's write-once claim (RunPod has no idempotency key). Before spending GPU time the worker
 * writes its job id with a presigned conditional PUT (`If-None-Match: *` is signed into `url`).
 * Only the first job of a generation succeeds; any other stops at once with a CLAIMED error. A
 * claim that already holds this job's own id (read back through `readUrl`) is the job's own: the
 * service retried the job after its worker died, or the answer to the first PUT was lost. Each
 * start of the job then takes the first free marker of `attemptUrls` (conditional PUTs too): when
 * none is free, the job's workers died too often and it fails with CRASHED instead of running again.
 */
export const JobClaim = z.object({
  url: z.url(),
  readUrl: z.url(),
  attemptUrls: z.array(z.url()).min(1).max(20),
});

/** Presigned PUT where the worker writes its output (JSON) before returning it: the result
 * survives RunPod purging it from /status. */
export const ResultUpload = z.object({ url: z.url() });

/** A captioner installed in the worker's model directory (its directory name). */
export const CaptionerName = z.string().min(1).max(100).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'a captioner name: letters, digits, ".", "_" or "-"');

export const CaptionJobInput = z.object({
  task: z.literal('caption'),
  triggerWord: TriggerWord,
  images: z.array(ImageRef).min(1).max(5000),
  /** Which installed captioner; absent: the worker's LORAFLOW_CAPTIONER. */
  captioner: CaptionerName.optional(),
  /** Text the captioner continues (conditional captioning, e.g. "a photo of"); refused by a captioner that takes none. */
  prompt: z.string().min(1).max(300).optional(),
  claim: JobClaim.optional(),
  result: ResultUpload.optional(),
});

/** Key layout of the .safetensors: diffusers (`load_lora_weights`) or kohya (ComfyUI, A1111). */
export const LoraFormat = z.enum(['diffusers', 'kohya']);

/** What a GPU worker trains: the part of a training request the train job carries unchanged. */
export const LoraSettings = z.object({
  /** A model name the worker resolves in its own model directory (baked into its image). */
  baseModel: z.string().regex(/^[A-Za-z0-9._-]+$/),
  triggerWord: TriggerWord,
  params: TrainingParams,
  format: LoraFormat.default('diffusers'),
});
export type LoraSettings = z.infer<typeof LoraSettings>;

/**
 * An image's entry in the S3 cache of encodings (its VAE latents and caption conditioning), named
 * by the orchestrator after everything it depends on: `readUrl` (GET) when the entry exists, so
 * the worker skips the image's download and encoding; `url` (PUT) when it does not, so the worker
 * stores what it encodes for the next segment or retrain.
 */
export const EncodingCacheRef = z.object({ readUrl: z.url().optional(), url: z.url().optional() });

export const TrainJobInput = LoraSettings.extend({
  task: z.literal('train'),
  images: z.array(ImageRef.extend({ caption: z.string().min(1).max(1000), encoding: EncodingCacheRef.optional() })).min(1).max(5000),
  /** Presigned PUT for the finished `.safetensors`; the worker has no S3 credentials. */
  output: z.object({ loraUrl: z.url() }),
  /** See JobClaim: closes the window between `/run` returning and the job id being recorded. */
  claim: JobClaim.optional(),
  result: ResultUpload.optional(),
  /**
   * Train only up to this step in this job, then upload a checkpoint and return without `lora`
   * (a segment shorter than the endpoint's execution timeout). Absent: train to params.steps.
   */
  stopAtStep: z.int().positive().optional(),
  /** Likewise, but by time: stop at the first step boundary after this many seconds of training
   * (counted from the first step, so setup — download, load, caching — never eats a segment). */
  stopAfterSeconds: z.number().positive().optional(),
  /** Presigned PUT for this job's checkpoint (LoRA weights, optimizer, scheduler, step, RNG state),
   * written every `everySteps`, at the end of a segment, and on cancel or SIGTERM before exiting.
   * `readUrl` reads the same object: a job the service retried resumes from its own last checkpoint. */
  checkpoint: z
    .object({
      url: z.url(),
      readUrl: z.url().optional(),
      everySteps: z.int().positive(),
      /** Presigned PUT for the finished training's last state (once, after the last step), so
       * `loraflow extend` continues it later without redoing a step. */
      finalUrl: z.url().optional(),
    })
    .optional(),
  /** Presigned GET of a checkpoint to continue from: training resumes at its step, not at 0. */
  resume: z.object({ url: z.url() }).optional(),
  /**
   * Start from earlier weights (`--init-from`, `loraflow extend`), when there is no checkpoint of
   * this training itself to resume: `lora`, a published diffusers-layout .safetensors (scale
   * folded into lora_B) loaded at step 0 with a fresh optimizer; `checkpoint`, the final checkpoint
   * of a training that differs from this one only in params.steps, continued from its step.
   */
  initFrom: z.object({ url: z.url(), kind: z.enum(['lora', 'checkpoint']) }).optional(),
  /** Sample images (PNG), one per prompt at each step, each with the seed `params.seed` + the
   * prompt's index, so a prompt's samples differ only by the step. `urls`: presigned PUTs keyed by
   * the step after which to render, one per prompt in `prompts`' order. */
  samples: z
    .object({ prompts: z.array(SamplePrompt).min(1).max(MAX_SAMPLE_PROMPTS), urls: z.record(StepKey, z.array(z.url()).min(1).max(MAX_SAMPLE_PROMPTS)) })
    .optional(),
  /** Intermediate LoRAs: presigned PUTs keyed by the step at which to save the LoRA as it is then
   * (same format and header as the final one). */
  saves: z.object({ urls: z.record(StepKey, z.url()) }).optional(),
  /**
   * Opaque label of this job's files (the orchestrator's key prefix for them), echoed with every
   * sample and saved LoRA the job reports. Samples and saves are kept in the checkpoints with their
   * label: a job that resumes reports those an earlier job made, under that job's label, so none is
   * redone or lost when a training is split into segments or a worker dies.
   */
  filesTag: FilesTag.optional(),
});

/** Defaults of a generation, shared with the CLI's --help so it stays true. */
export const GENERATE_DEFAULTS = { n: 4, seed: 0, steps: 25 } as const;

/** What a generation renders: the same values reproduce the same PNGs on the same worker image. */
export const GenerateParams = z.object({
  prompts: z.array(z.string().min(1).max(1000)).min(1).max(16),
  /** SD and SDXL; FLUX.1 has no negative prompt (distilled guidance) and refuses one as an INPUT error. */
  negativePrompt: z.string().min(1).max(1000).optional(),
  /** Images per prompt; image i of every prompt uses seed + i, so prompts are comparable. */
  n: z.int().min(1).max(16).default(GENERATE_DEFAULTS.n),
  seed: z.int().min(0).max(2 ** 31 - 1).default(GENERATE_DEFAULTS.seed),
  steps: z.int().min(1).max(200).default(GENERATE_DEFAULTS.steps),
  /** Classifier-free guidance (SD, SDXL) or FLUX.1-dev's distilled guidance; absent: the pipeline's default. */
  guidance: z.number().min(0).max(30).optional(),
  /** Absent: the base model's native size; sides must be multiples of the family's pixel multiple. */
  width: z.int().min(32).max(2048).multipleOf(8).optional(),
  height: z.int().min(32).max(2048).multipleOf(8).optional(),
});
export type GenerateParams = z.infer<typeof GenerateParams>;

export const GenerateJobInput = GenerateParams.extend({
  task: z.literal('generate'),
  baseModel: LoraSettings.shape.baseModel,
  /** LoRAs applied together at their weights (presigned GETs, checked against sha256); none: the base model. */
  loras: z.array(z.object({ url: z.url(), sha256: Sha256, weight: z.number().min(-4).max(4) })).max(8),
  /** Presigned PUTs: `images[p * n + i]` is image i of prompt p; `contactSheet` is the grid of all. */
  output: z.object({ images: z.array(z.url()).min(1).max(256), contactSheet: z.url() }),
  claim: JobClaim.optional(),
  result: ResultUpload.optional(),
});

export const GpuJobInput = z.discriminatedUnion('task', [CaptionJobInput, TrainJobInput, GenerateJobInput]);
export type CaptionJobInput = z.infer<typeof CaptionJobInput>;
export type TrainJobInput = z.infer<typeof TrainJobInput>;
export type GenerateJobInput = z.infer<typeof GenerateJobInput>;
export type GpuJobInput = z.infer<typeof GpuJobInput>;

export const CaptionJobOutput = z.object({
  captioner: z.string(),
  captions: z.array(z.object({ id: Sha256, caption: z.string().min(1) })),
});
export type CaptionJobOutput = z.infer<typeof CaptionJobOutput>;

export const TrainJobOutput = z.object({
  /** The last step trained (params.steps when finished, stopAtStep after a segment). */
  step: z.int().nonnegative(),
  /** The finished LoRA; absent when the job ended a segment (see `checkpoint`). */
  lora: z.object({ sha256: Sha256, bytes: z.int().positive() }).optional(),
  /** The last checkpoint this job uploaded, if any. */
  checkpoint: z.object({ sha256: Sha256, bytes: z.int().positive(), step: z.int().positive() }).optional(),
  /** The finished training's state, uploaded to checkpoint.finalUrl. */
  finalCheckpoint: z.object({ sha256: Sha256, bytes: z.int().positive(), step: z.int().positive() }).optional(),
  /** Samples uploaded, by step and prompt (index into samples.prompts): this job's and those it
   * carried over from the checkpoint it resumed (with the label of the job that made them). */
  samples: z.array(z.object({ step: z.int().positive(), prompt: z.int().nonnegative(), sha256: Sha256, filesTag: FilesTag.optional() })).max(1000).optional(),
  /** Intermediate LoRAs saved (see saves), this job's and those carried over, like samples. */
  saves: z.array(z.object({ step: z.int().positive(), sha256: Sha256, bytes: z.int().positive(), filesTag: FilesTag.optional() })).max(1000).optional(),
  metrics: z.object({
    steps: z.int().nonnegative(),
    finalLoss: z.number(),
    /** At most 200 points, evenly downsampled, so it fits any payload limit. */
    lossCurve: z.array(z.number()).max(200),
    /** Seconds per phase: download, load, caching, training, upload. */
    seconds: z.record(z.string(), z.number().nonnegative()),
    device: z.string(),
    peakMemoryBytes: z.int().nonnegative().optional(),
    /** Where the training (carried in its checkpoints) ended a segment, or resumed from a
     * checkpoint after a job was lost before ending its segment (the steps after it were redone). */
    events: z.array(z.object({ step: z.int().nonnegative(), kind: z.enum(['segment-end', 'resumed-after-loss']) })).max(1000).optional(),
    /** Images whose caption (trigger word included) is longer than a text encoder's window: the tail was cut. */
    truncatedCaptions: z.array(Sha256).max(100_000).optional(),
    /** The S3 cache of encodings in this job: images served from it, encoded here, and stored for the next job. */
    encodings: z.object({ hits: z.int().nonnegative(), encoded: z.int().nonnegative(), stored: z.int().nonnegative() }).optional(),
    /** The denoiser was the one this worker kept from its last job (gpu-worker/warm.py): not loaded again. */
    warm: z.boolean().optional(),
  }),
});
export type TrainJobOutput = z.infer<typeof TrainJobOutput>;

export const GenerateJobOutput = z.object({
  /** In the order of `output.images`. */
  images: z.array(z.object({ prompt: z.int().nonnegative(), seed: z.int().nonnegative(), sha256: Sha256, bytes: z.int().positive() })).max(256),
  contactSheet: z.object({ sha256: Sha256, bytes: z.int().positive() }),
  metrics: z.object({
    width: z.int().positive(),
    height: z.int().positive(),
    /** Seconds per phase: download, load, generating, upload. */
    seconds: z.record(z.string(), z.number().nonnegative()),
    device: z.string(),
    /** Whether the base model was already loaded by an earlier job on this worker. */
    warm: z.boolean(),
  }),
});
export type GenerateJobOutput = z.infer<typeof GenerateJobOutput>;

/** What `runpod.serverless.progress_update` carries while a job runs. */
export const GpuProgress = z.object({
  phase: z.enum(['download', 'load', 'caching', 'captioning', 'training', 'generating', 'upload']),
  step: z.int().nonnegative().optional(),
  totalSteps: z.int().positive().optional(),
  loss: z.number().optional(),
  /** Training speed over this job's steps so far, and the estimated seconds left to params.steps. */
  itPerSec: z.number().nonnegative().optional(),
  etaSeconds: z.number().nonnegative().optional(),
});
export type GpuProgress = z.infer<typeof GpuProgress>;

/**
 * Error classes the worker puts in front of its error message as "[CLASS] message"
 * (a plain string survives every RunPod layer). The orchestrator maps them to retries;
 * CLAIMED means another job already owns this work, CRASHED that the job was started on more
 * workers than its attempt markers allow (see JobClaim).
 */
export const GpuErrorClass = z.enum(['OOM', 'INPUT', 'TRANSIENT', 'INTERNAL', 'CLAIMED', 'CRASHED']);
export type GpuErrorClass = z.infer<typeof GpuErrorClass>;
