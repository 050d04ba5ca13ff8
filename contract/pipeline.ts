// Messages between the CLI, the workflow and its activities. Small metadata only:
// keys, ids and hashes; never image bytes, presigned URLs or secrets (they would land in history).
import { z } from 'zod';
import { CaptionerName, GenerateParams, LoraSettings, MAX_SAMPLE_PROMPTS, SamplePrompt, Sha256 } from './gpu-job.js';

/** A run's GPU budget, in the price currency of LORAFLOW_GPU_PRICES. */
export const Budget = z.number().positive().max(1_000_000);

export const LoraName = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9][a-z0-9-]*$/, 'lowercase letters, digits and "-", starting with a letter or digit');

/** Everything that decides what is trained and how it is published; passed whole from the request
 * to the train stage and into metadata.json, never copied field by field. */
export const TrainingSettings = LoraSettings.extend({
  /** Render a sample image every N steps (0: only after the last step). */
  sampleEvery: z.int().min(0).max(100_000).default(0),
  /** The samples' prompts (`[trigger]` stands for the trigger word), one image each per sample
   * step, each prompt with its own fixed seed. Absent: the trigger word alone. */
  samplePrompts: z.array(SamplePrompt).min(1).max(MAX_SAMPLE_PROMPTS).optional(),
  /** Keep the LoRA as it is every N steps (published as lora-step<N>.safetensors); absent or 0: only the final one. */
  saveEvery: z.int().min(0).max(100_000).optional(),
});
export type TrainingSettings = z.infer<typeof TrainingSettings>;

/** A published version's name: `20261125-093012-1a2b3c4d`, or `latest` (resolved when the run starts). */
export const LoraVersion = z.string().min(1).max(100).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'a published version, or "latest"');

/** What a training starts from instead of fresh weights (`--init-from`, `loraflow extend`). */
export const InitFrom = z.object({
  name: LoraName,
  version: LoraVersion,
  /** weights: a new training from that version's LoRA (same base model and rank). continue
   * (`loraflow extend`): that version's own training made longer, from its final checkpoint, on
   * the same images and captions; ingest and caption are skipped. */
  mode: z.enum(['weights', 'continue']).default('weights'),
});
export type InitFrom = z.infer<typeof InitFrom>;

/** How the captions are made (a sidecar .txt still wins over the captioner). */
export const CaptionSettings = z.object({
  /** A captioner the GPU worker has; absent: LORAFLOW_CAPTIONER. The caption cache is kept per captioner (and prompt). */
  captioner: CaptionerName.optional(),
  /** For a captioner that continues a prompt (BLIP: "a photo of"). */
  prompt: z.string().min(1).max(300).optional(),
  /** Put before / after every caption (after the trigger word / at the end). */
  prefix: z.string().min(1).max(200).optional(),
  suffix: z.string().min(1).max(200).optional(),
  /** Pause after captioning (stage `awaiting-captions`) until `loraflow continue`; `loraflow captions pull/push` edit them meanwhile. */
  review: z.literal(true).optional(),
});
export type CaptionSettings = z.infer<typeof CaptionSettings>;

export const TrainRequest = z.object({
  name: LoraName,
  /** A directory or .zip on the machine the Temporal worker runs on, an http(s) URL of a .zip,
   * or an s3://bucket/prefix readable with the worker's credentials. */
  dataset: z.object({
    path: z.string().min(1),
    /** sha256 over the dataset's files, computed by the client: same request + same files = same workflow. */
    fingerprint: Sha256,
  }),
  training: TrainingSettings,
  /** Scheduled retraining: after ingest, end as `skipped` when the dataset's manifest is the one the
   * LoRA name's latest published version was trained on. Absent (CLI runs): always train. */
  onlyIfChanged: z.boolean().optional(),
  /** Most the run may spend on GPU time (price currency): past it, its GPU job is cancelled and the
   * run fails with BudgetExceeded. Absent: no cap. */
  budget: Budget.optional(),
  /** Pins the run's GPU stages to endpoints of this GPU type (`--gpu`, matched case-insensitively
   * against LORAFLOW_ENDPOINTS' types). Absent: the first endpoint that fits. */
  gpu: z.string().min(1).max(64).optional(),
  /** The Hugging Face push: `allowExistingRepo` lets it write into a repo loraflow did not create
   * (it then replaces README.md and lora.safetensors and deletes samples/ there). Absent: only repos
   * loraflow created (their model card carries its marker). */
  hub: z.object({ allowExistingRepo: z.literal(true) }).optional(),
  initFrom: InitFrom.optional(),
  captions: CaptionSettings.optional(),
});
export type TrainRequest = z.infer<typeof TrainRequest>;
export type TrainRequestInput = z.input<typeof TrainRequest>;

/** A published LoRA (`loras/<name>/<version>/`) at a weight; absent version: `latest.json`'s. */
export const LoraRef = z.object({ name: LoraName, version: LoraVersion.optional(), weight: z.number().min(-4).max(4).default(1) });
export type LoraRef = z.infer<typeof LoraRef>;

/** `loraflow generate`: the first LoRA's version holds the images; the others are applied with it. */
export const GenerateRequest = GenerateParams.extend({
  loras: z.array(LoraRef).min(1).max(8),
  budget: Budget.optional(),
});
export type GenerateRequest = z.infer<typeof GenerateRequest>;
export type GenerateRequestInput = z.input<typeof GenerateRequest>;

/** A LoRA of a generation as it was resolved (the version `latest` named then) and applied. */
export interface ResolvedLora {
  name: string;
  version: string;
  key: string;
  sha256: string;
  baseModel: string;
  weight: number;
}

/** What the generate GPU stage left in the run's staging area, as the worker reported it. */
export interface GeneratedImages {
  gpuJobId: string;
  gpuJobIds: string[];
  images: { prompt: number; seed: number; sha256: string; key: string }[];
  contactSheet: { sha256: string; key: string };
  metrics: { width: number; height: number; seconds: Record<string, number>; device: string; warm: boolean };
  usage: GpuUsage;
}

/** What `generateImages` returns and `loras/<name>/<version>/generations/<id>/generation.json` holds. */
export interface GenerationResult {
  id: string;
  /** s3://…/generations/<id>/ */
  uri: string;
  loras: ResolvedLora[];
  baseModel: string;
  params: GenerateParams;
  images: { prompt: number; seed: number; sha256: string; uri: string }[];
  contactSheet: { sha256: string; uri: string };
  metrics: GeneratedImages['metrics'];
  gpuJobIds: string[];
  usage: GpuUsage;
}

export const Stage = z.enum(['queued', 'ingest', 'caption', 'awaiting-captions', 'train', 'publish', 'published', 'skipped', 'failed', 'cancelled']);
export type Stage = z.infer<typeof Stage>;

/**
 * What is really happening to a GPU stage, from the job's status and the endpoint's health:
 * RunPod says IN_QUEUE for all of the first five.
 */
export type GpuState =
  | 'queued' // about to be taken by an idle worker
  | 'waiting-for-capacity' // every worker busy (or none available) at the endpoint's limit
  | 'cold-starting' // a worker is starting for this job
  | 'worker-crashing' // workers keep dying before or while taking jobs
  | 'resuming' // the job's worker was lost: a new job continues from the last checkpoint
  | 'running'
  | 'finished';

/** What the `progress` query returns. */
/** What a GPU stage reports about its current job. */
interface GpuJobProgress {
  /** Absent between a lost job and the submission of the job that resumes it. */
  gpuJobId?: string;
  /** The endpoint the GPU stage is on (LORAFLOW_ENDPOINTS), and why it left the one before, if it moved. */
  gpuEndpoint?: string;
  gpuMoved?: string;
  /** What the job's RunPod status means here (see GpuState), and why, when known (e.g. the last worker failure). */
  gpuState?: GpuState;
  gpuDetail?: string;
  phase?: string;
  step?: number;
  totalSteps?: number;
  loss?: number;
}

export interface PipelineProgress extends GpuJobProgress {
  stage: Stage;
  name: string;
  /** RunPod's status of the current GPU job (IN_QUEUE, IN_PROGRESS, ...). */
  gpuStatus?: string;
  /** ISO times each stage started, in order. */
  stageStartedAt: Partial<Record<Stage, string>>;
  updatedAt: string;
  error?: string;
  result?: PublishedLora;
  /** Set when a scheduled run found its dataset unchanged and trained nothing. */
  skipped?: SkippedRun;
  /** While the run waits in `awaiting-captions`: where `loraflow captions pull/push` read and write. */
  captionReview?: { manifestKey: string; captionsKey: string; triggerWord: string };
}

/** Sent by GPU activities to their workflow (throttled), so the query can answer without I/O. */
export interface GpuProgressSignal extends GpuJobProgress {
  gpuStatus: string;
}

export interface DatasetManifestImage {
  id: string; // sha256 of the stored bytes (metadata-stripped JPEG, PNG or WebP)
  key: string; // images/sha256/<id>.<jpg|png|webp> (lib/keys.ts)
  source: string; // file name inside the dataset, for error messages
  width: number;
  height: number;
  caption?: string; // from a sidecar .txt
}
export interface DatasetManifest {
  version: 1;
  images: DatasetManifestImage[];
}

/** Stored at CaptionResult.captionsKey: image id → final caption (trigger word first). */
export type Captions = Record<string, string>;

/** A dataset file ingest did not use, and why (operating-system junk is ignored without a word). */
export interface SkippedFile {
  name: string;
  reason: string;
}

export interface IngestResult {
  manifestKey: string;
  manifestSha256: string;
  imageCount: number;
  sidecarCaptions: number;
  duplicatesDropped: number;
  /** Files not used (at most 100 named; `skippedCount` counts them all). */
  skipped?: SkippedFile[];
  skippedCount?: number;
}

export interface CaptionResult {
  captionsKey: string;
  sidecar: number;
  gpuCaptioned: number;
  /** Reused from the caption cache (captions/<captioner>/<image sha256>.txt): not paid for again. */
  cached?: number;
  gpuJobId?: string;
  /** The captioner that made the GPU captions, when the run named one. */
  captioner?: string;
}

export interface TrainResult {
  /** The job that finished the training; `gpuJobIds` lists every job it took (segments, resumes). */
  gpuJobId: string;
  gpuJobIds: string[];
  stagingKey: string;
  lora: { sha256: string; bytes: number };
  /** `prompt`: index into the expanded sample prompts (absent: 0). */
  samples: { step: number; prompt?: number; key: string; sha256: string }[];
  /** Intermediate LoRAs (saveEvery), staged: verified and published beside the final one. */
  saves?: { step: number; key: string; sha256: string; bytes: number }[];
  /** steps: the training's length; stepsPaid: steps the GPU jobs ran (redone ones included). */
  /** GPU time of every job the run used (caption and training, failed ones included) and its price. */
  usage?: GpuUsage;
  /** The finished training's last state (loraflow extend continues from it), staged like the LoRA. */
  finalCheckpoint?: { key: string; sha256: string; bytes: number; step: number };
  metrics: {
    steps: number;
    stepsPaid?: number;
    finalLoss: number;
    lossCurve: number[];
    seconds: Record<string, number>;
    device: string;
    peakMemoryBytes?: number;
    /** Where a segment ended or the training resumed after a lost job (the report's chart marks them). */
    events?: { step: number; kind: 'segment-end' | 'resumed-after-loss' }[];
  };
}

/** `loras/<name>/<version>/metadata.json`, written by publish; read by the report and the Hub push. */
export interface LoraMetadata extends TrainingSettings {
  name: string;
  version: string;
  lora: { sha256: string; bytes: number };
  /** `prompt`: index into `prompts` (absent: 0). */
  samples: { step: number; prompt?: number; sha256: string; uri: string }[];
  /** The sample prompts as rendered (`[trigger]` expanded). */
  prompts?: string[];
  /** Intermediate LoRAs (saveEvery): loras/<name>/<version>/lora-step<N>.safetensors, each verified. */
  savedSteps?: { step: number; sha256: string; bytes: number; uri: string }[];
  /** Set by `loraflow promote`: `lora` (and lora.safetensors) is then this step's LoRA; the one the
   * training ended with stays available as `final.uri`. */
  promoted?: { step: number; at: string; final: { step: number; sha256: string; bytes: number; uri: string } };
  dataset: { manifestSha256: string; images: number; captions: CaptionResult; skippedFiles?: { count: number; files: SkippedFile[] } };
  gpuJobIds: string[];
  metrics: TrainResult['metrics'];
  usage?: GpuUsage;
  budget?: number;
  hub?: { allowExistingRepo: true };
  /** The version this one started from, as resolved when the run started (never `latest`). */
  initFrom?: ResolvedInitFrom['parent'];
  captionSettings?: CaptionSettings;
  /** The training's final state beside the LoRA: `loraflow extend` continues it. */
  checkpoint?: { sha256: string; bytes: number; step: number; uri: string };
}

/** What resolveInitFrom found: the parent version and the object the GPU job starts from. */
export interface ResolvedInitFrom {
  parent: { name: string; version: string; mode: InitFrom['mode']; sha256: string };
  /** lora: the published .safetensors; checkpoint: the version's final checkpoint. */
  weights: { key: string; kind: 'lora' | 'checkpoint'; sha256: string };
  /** continue: the parent's images and captions (its run's ingest and caption results). */
  dataset?: IngestResult;
  captions?: CaptionResult;
}

/** `loras/<name>/latest.json`: the newest published version of a LoRA name and its dataset. */
export interface LatestPublished {
  name: string;
  version: string;
  manifestSha256: string;
  uri: string;
  metadataUri: string;
  /** The step promoted to this version's LoRA (`loraflow promote`); absent: the final one. */
  step?: number;
}

/** What a scheduled run (onlyIfChanged) returns when the dataset has not changed. */
export interface SkippedRun {
  skipped: true;
  reason: 'dataset unchanged';
  manifestSha256: string;
  /** The published version that was trained on this same dataset. */
  latestVersion: string;
  latestUri: string;
}

export type TrainOutcome = PublishedLora | SkippedRun;
export const isSkipped = (o: TrainOutcome | undefined): o is SkippedRun => !!o && 'skipped' in o && o.skipped === true;

export interface GpuUsage {
  /** Each job priced by its GPU: the device it reported, else the endpoint's LORAFLOW_GPU_TYPE. */
  jobs: {
    gpuJobId: string;
    status: string;
    delayMs?: number;
    executionMs?: number;
    gpu?: string;
    pricePerHour: number;
    cost: number;
    /** The endpoint that ran it, and why the stage came to it from another (absent: its first choice). */
    endpointId?: string;
    movedFrom?: { from: string; gpuJobId?: string; reason: string };
  }[];
  /** Sum of the jobs' executionTime: what the endpoint bills. */
  gpuSeconds: number;
  /** Sum of the jobs' delayTime: queue wait and cold starts. */
  queueSeconds: number;
  /** Jobs whose timing the endpoint no longer had (purged): not in the sums. */
  unknownJobs: number;
  /** The endpoint's GPU type's price per hour (LORAFLOW_GPU_TYPE in LORAFLOW_GPU_PRICES, else LORAFLOW_GPU_PRICE_PER_HOUR). */
  pricePerHour: number;
  /** Sum of the jobs' executionTime × their GPU's price / 3600, in the price's currency (USD by default). */
  cost: number;
}

export interface PublishedLora {
  uri: string; // s3://bucket/loras/<name>/<version>/lora.safetensors
  metadataUri: string;
  version: string;
  sha256: string;
  bytes: number;
  /** GPU seconds and cost of the run. */
  usage?: GpuUsage;
  /** Dataset files the run did not train on, and why (from ingest). */
  skippedFiles?: { count: number; files: SkippedFile[] };
  /** s3://…/loras/<name>/<version>/report/index.html, once the report is written. */
  reportUri?: string;
  /** The Hugging Face Hub push, where the worker has HF_TOKEN (activities/hub.ts). */
  hub?: { outcome: 'pushed' | 'already-pushed' | 'newer-version-on-hub' | 'failed'; repo?: string; url?: string; revision?: string; commitUrl?: string; error?: string };
}

