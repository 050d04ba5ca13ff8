// Item 5 (the half that runs without a GPU): billed seconds against training seconds per job,
// through the local endpoint with the real GPU worker (gpu-worker/handler.py, tiny model on CPU).
// The first job meets a cold worker (process start, imports, model load); later ones a warm one.
// Item 6: GPU-seconds and price per 1,000-step run from those figures, next to a public anchor.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { TrainJobInput } from '../contract/gpu-job.js';
import { presignGet, presignPut, putBytes } from '../lib/s3.js';
import { makeDataset } from '../testkit/datasets.js';
import { startS3, tempDir } from '../testkit/services.js';
import { mean, round, runToEnd, startRealGpuEndpoint } from './lib.js';

export interface GpuJobFigures {
  job: number;
  cold: boolean;
  delaySeconds: number;
  executionSeconds: number;
  /** What a serverless worker bills for this job: execution, plus the worker's start when it was cold. */
  billedSeconds: number;
  phaseSeconds: Record<string, number>;
  trainingSeconds: number;
  /** Execution the worker's phase timers do not cover (imports on a cold worker, the SDK). */
  unattributedSeconds: number;
  trainingShareOfBilled: number;
}

export async function benchGpu(o: { jobs: number; steps: number; log: (m: string) => void }) {
  const tmp = tempDir('bench-gpu');
  const s3 = await startS3(tmp.dir);
  const endpointStarted = Date.now();
  const { runpod, client } = await startRealGpuEndpoint(path.join(tmp.dir, 'logs', 'runpod.log'));
  try {
    const dir = await makeDataset(path.join(tmp.dir, 'dataset'), { images: 4, captioned: 0, size: 64 });
    const images = await Promise.all(
      readdirSync(dir).map(async (name, i) => {
        const bytes = readFileSync(path.join(dir, name));
        const id = createHash('sha256').update(bytes).digest('hex');
        await putBytes(s3.storage, `images/${id}.png`, bytes, 'image/png');
        return { id, url: await presignGet(s3.storage, `images/${id}.png`), caption: `lfbench, a test square ${i}` };
      }),
    );

    const jobs: GpuJobFigures[] = [];
    for (let j = 0; j < o.jobs; j++) {
      const input = TrainJobInput.parse({
        task: 'train',
        baseModel: 'tiny-sd',
        triggerWord: 'lfbench',
        images,
        params: { steps: o.steps, seed: 42 },
        output: { loraUrl: await presignPut(s3.storage, `runs/bench-${j}/lora.safetensors`) },
      });
      const submitted = Date.now();
      const status = await runToEnd(client, input);
      if (status.status !== 'COMPLETED') throw new Error(`GPU job ${j} ${status.status}: ${status.error}`);
      const output = status.output as { metrics: { seconds: Record<string, number> } };
      const seconds = output.metrics.seconds;
      const delay = (status.delayTime ?? 0) / 1000;
      const execution = (status.executionTime ?? 0) / 1000;
      // The first job was submitted as the endpoint started: its wait is the worker's cold start.
      const cold = j === 0;
      const billed = execution + (cold ? (submitted - endpointStarted) / 1000 + delay : 0);
      const training = seconds.training ?? 0;
      jobs.push({
        job: j,
        cold,
        delaySeconds: round(delay),
        executionSeconds: round(execution),
        billedSeconds: round(billed),
        phaseSeconds: seconds,
        trainingSeconds: training,
        unattributedSeconds: round(execution - Object.values(seconds).reduce((a, b) => a + b, 0)),
        trainingShareOfBilled: round(training / billed),
      });
      o.log(`gpu: job ${j} ${JSON.stringify(jobs[jobs.length - 1])}`);
    }
    const warm = jobs.filter((j) => !j.cold);
    const cold = jobs.find((j) => j.cold)!;
    return {
      model: 'tiny-sd (random-initialised SD-shaped UNet, 16x16 latents), CPU',
      steps: o.steps,
      jobs,
      coldStartSeconds: round(cold.billedSeconds - cold.executionSeconds),
      warm: warm.length
        ? {
            billedSeconds: round(mean(warm.map((j) => j.billedSeconds))),
            trainingSeconds: round(mean(warm.map((j) => j.trainingSeconds))),
            trainingShareOfBilled: round(mean(warm.map((j) => j.trainingShareOfBilled))),
            secondsPerStep: round(mean(warm.map((j) => j.trainingSeconds / o.steps)), 4),
          }
        : undefined,
      cold: {
        billedSeconds: cold.billedSeconds,
        trainingSeconds: cold.trainingSeconds,
        unattributedSeconds: cold.unattributedSeconds,
        trainingShareOfBilled: cold.trainingShareOfBilled,
      },
      lentGpu: {
        measured: false,
        why: 'no GPU machine was lent to this run: it/s and peak VRAM against diffusers’ reference LoRA training script were not measured',
      },
    };
  } finally {
    await runpod.stop();
    await s3.stop();
    tmp.remove();
  }
}

/** Public anchor: a hosted FLUX LoRA trainer charges about $2 per run on one H100 at $5.49/hour. */
export const ANCHOR = { dollarsPerRun: 2, dollarsPerHour: 5.49 };

export function costOf(gpu: Awaited<ReturnType<typeof benchGpu>>, dollarsPerHour: number) {
  const warm = gpu.warm ?? { billedSeconds: gpu.cold.billedSeconds, trainingSeconds: gpu.cold.trainingSeconds, secondsPerStep: gpu.cold.trainingSeconds / gpu.steps };
  // Per-run overhead (download, load, caching, upload, the endpoint) is what a warm job bills
  // beyond training; a 1,000-step run adds 1,000 steps at the measured rate.
  const fixedWarm = warm.billedSeconds - warm.trainingSeconds;
  const warmRun = fixedWarm + 1000 * warm.secondsPerStep;
  // A cold worker adds its start and whatever else its first job spends outside training (imports).
  const coldExtra = Math.max(0, gpu.cold.billedSeconds - gpu.cold.trainingSeconds - fixedWarm);
  const coldRun = warmRun + coldExtra;
  const anchorSeconds = (ANCHOR.dollarsPerRun / ANCHOR.dollarsPerHour) * 3600;
  return {
    basis: `${gpu.model}; ${gpu.steps}-step jobs extrapolated to 1,000 steps. Not comparable to FLUX on an H100: the per-run fixed costs are the meaningful part`,
    dollarsPerGpuHour: dollarsPerHour,
    perThousandStepRun: {
      warmGpuSeconds: round(warmRun, 1),
      coldGpuSeconds: round(coldRun, 1),
      warmDollars: round((warmRun / 3600) * dollarsPerHour, 4),
      coldDollars: round((coldRun / 3600) * dollarsPerHour, 4),
      fixedSecondsPerRun: round(fixedWarm, 2),
      coldExtraSeconds: round(coldExtra, 2),
    },
    anchor: { ...ANCHOR, gpuSecondsPerRun: round(anchorSeconds, 0) },
    ratioToAnchor: { warm: round(warmRun / anchorSeconds, 4), cold: round(coldRun / anchorSeconds, 4) },
  };
}
