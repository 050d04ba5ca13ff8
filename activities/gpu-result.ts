// What a finished RunPod job means: its billed timing, its result checked against the contract,
// and its failure sorted into the worker's error classes (which decide retries).
import { ApplicationFailure } from '@temporalio/activity';
import type { z } from 'zod';
import { GpuErrorClass } from '../contract/gpu-job.js';
import { scrubUrls } from '../lib/logger.js';
import type { RunpodJobStatus } from '../lib/runpod-client.js';

/** What the endpoint bills by: queue wait (incl. cold start) and execution time of one job, ms. */
export interface GpuJobTiming {
  gpuJobId: string;
  status: string;
  /** The device the worker reported in its result (metrics.device), e.g. "cuda:NVIDIA H100 80GB HBM3". */
  gpu?: string;
  delayMs?: number;
  executionMs?: number;
}

export function timingOf(status: RunpodJobStatus): GpuJobTiming {
  const device = (status.output as { metrics?: { device?: unknown } } | undefined)?.metrics?.device;
  return {
    gpuJobId: status.id,
    status: status.status,
    ...(typeof device === 'string' ? { gpu: device } : {}),
    ...(status.delayTime !== undefined ? { delayMs: status.delayTime } : {}),
    ...(status.executionTime !== undefined ? { executionMs: status.executionTime } : {}),
  };
}

/** A COMPLETED job's output, or a non-retryable failure naming the first field that is wrong. */
export function parseOutput<T>(gpuJobId: string, status: RunpodJobStatus, schema: z.ZodType<T>): T {
  const parsed = schema.safeParse(status.output);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw ApplicationFailure.nonRetryable(
      `GPU job ${gpuJobId} reported COMPLETED without a valid result: ${issue?.path.join('.')}: ${issue?.message}`,
      'GpuOutputInvalid',
    );
  }
  return parsed.data;
}

export function failureOf(gpuJobId: string, status: RunpodJobStatus): { cls: GpuErrorClass; message: string } {
  const { cls, message } = classify(status.error ?? status.status);
  return { cls, message: `GPU job ${gpuJobId} ${status.status === 'TIMED_OUT' ? 'timed out' : 'failed'}: ${message}` };
}

/** "[CLASS] message" from the worker; anything else (crashes, SDK tracebacks) is INTERNAL. */
export function classify(error: unknown): { cls: GpuErrorClass; message: string } {
  const text = typeof error === 'string' ? error : JSON.stringify(error ?? 'unknown error');
  const tagged = /^\[(OOM|INPUT|TRANSIENT|INTERNAL|CLAIMED|CRASHED)\] ([\s\S]*)$/.exec(text);
  if (tagged) return { cls: GpuErrorClass.parse(tagged[1]), message: scrubUrls(tagged[2]!) };
  try {
    const sdk = JSON.parse(text) as { error_message?: string; error_type?: string };
    if (sdk.error_message) return { cls: 'INTERNAL', message: scrubUrls(`${sdk.error_type ?? 'error'}: ${sdk.error_message}`) };
  } catch {
    // not the SDK's JSON form
  }
  return { cls: 'INTERNAL', message: scrubUrls(text) };
}
