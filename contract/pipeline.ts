// Messages between the CLI, the workflow and its activities. Small metadata only:
// keys, ids and hashes; never image bytes, presigned URLs or secrets (they would land in history).
import { z } from 'zod';
import { LoraSettings, Sha256 } from './gpu-job.js';

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
});
export type TrainingSettings = z.infer<typeof TrainingSettings>;

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
});
export type TrainRequest = z.infer<typeof TrainRequest>;
export type TrainRequestInput = z.input<typeof TrainRequest>;

export const Stage = z.enum(['queued', 'ingest', 'caption', 'train', 'publish', 'published', 'skipped', 'failed', 'cancelled']);
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
}

/** Sent by GPU activities to their workflow (throttled), so the query can answer without I/O. */
export interface GpuProgressSignal extends GpuJobProgress {
  gpuStatus: string;
}

export interface DatasetManifestImage {
  id: string; // sha256 of the stored (metadata-stripped PNG) bytes
  key: string;
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
}

export interface TrainResult {
  /** The job that finished the training; `gpuJobIds` lists every job it took (segments, resumes). */
  gpuJobId: string;
  gpuJobIds: string[];
  stagingKey: string;
  lora: { sha256: string; bytes: number };
  samples: { step: number; key: string; sha256: string }[];
  /** steps: the training's length; stepsPaid: steps the GPU jobs ran (redone ones included). */
  /** GPU time of every job the run used (caption and training, failed ones included) and its price. */
  usage?: GpuUsage;
  metrics: { steps: number; stepsPaid?: number; finalLoss: number; lossCurve: number[]; seconds: Record<string, number>; device: string; peakMemoryBytes?: number };
}

/** `loras/<name>/<version>/metadata.json`, written by publish; read by the report and the Hub push. */
export interface LoraMetadata extends TrainingSettings {
  name: string;
  version: string;
  lora: { sha256: string; bytes: number };
  samples: { step: number; sha256: string; uri: string }[];
  dataset: { manifestSha256: string; images: number; captions: CaptionResult; skippedFiles?: { count: number; files: SkippedFile[] } };
  gpuJobIds: string[];
  metrics: TrainResult['metrics'];
  usage?: GpuUsage;
  budget?: number;
  hub?: { allowExistingRepo: true };
}

/** `loras/<name>/latest.json`: the newest published version of a LoRA name and its dataset. */
export interface LatestPublished {
  name: string;
  version: string;
  manifestSha256: string;
  uri: string;
  metadataUri: string;
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

