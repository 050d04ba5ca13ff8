// Follows a pipeline through its stages: a progress bar on a terminal, one line per change elsewhere.
import { type Client, type WorkflowHandle, WorkflowFailedError } from '@temporalio/client';
import { SingleBar } from 'cli-progress';
import { describeState } from '../contract/describe.js';
import type { PipelineProgress, PublishedLora } from '../contract/pipeline.js';
import { status } from './inspect.js';
import { CliError } from './connect.js';

/** The honest state first (waiting for capacity, cold start, crashing, resuming, …), then the details. */
export function describeProgress(p: PipelineProgress): string {
  return `${describeState(p)} | ${progressDetails(p)}`;
}

/** stage=… gpuJob=… (status, state) phase=… step x/y loss=… */
export function progressDetails(p: PipelineProgress): string {
  const parts = [`stage=${p.stage}`];
  if (p.gpuJobId) parts.push(`gpuJob=${p.gpuJobId} (${p.gpuStatus ?? '?'}${p.gpuState ? `, ${p.gpuState}` : ''})`);
  if (p.phase) parts.push(`phase=${p.phase}`);
  if (p.step !== undefined && p.totalSteps) parts.push(`step ${p.step}/${p.totalSteps}`);
  if (p.loss !== undefined) parts.push(`loss=${p.loss.toFixed(4)}`);
  return parts.join(' ');
}

export async function watch(client: Client, handle: WorkflowHandle, opts: { quiet?: boolean } = {}): Promise<PublishedLora> {
  const tty = process.stderr.isTTY && !opts.quiet;
  const bar = tty ? new SingleBar({ format: '{stage} [{bar}] {value}/{total} {detail}', stream: process.stderr }) : undefined;
  let last = '';
  let barStarted = false;
  const timer = setInterval(() => {
    status(client, handle.workflowId).then((p) => {
      const line = describeProgress(p);
      if (bar) {
        if (!barStarted) (bar.start(p.totalSteps ?? 1, p.step ?? 0, { stage: p.stage, detail: '' }), (barStarted = true));
        bar.setTotal(p.totalSteps ?? 1);
        bar.update(p.step ?? 0, { stage: p.stage.padEnd(8), detail: p.loss !== undefined ? `loss ${p.loss.toFixed(4)}` : describeState(p) });
      } else if (line !== last && !opts.quiet) {
        process.stderr.write(`${line}\n`);
      }
      last = line;
    }, () => {});
  }, 1000);
  try {
    return (await handle.result()) as PublishedLora;
  } catch (err) {
    if (err instanceof WorkflowFailedError) throw new CliError(`pipeline ${handle.workflowId} ${failureText(err)}`);
    throw err;
  } finally {
    clearInterval(timer);
    bar?.stop();
  }
}

/** The deepest cause carries the real reason (ActivityFailure → ApplicationFailure). */
export function failureText(err: WorkflowFailedError): string {
  let cause: Error | undefined = err.cause;
  while (cause?.cause instanceof Error) cause = cause.cause;
  if (err.cause?.name === 'CancelledFailure') return 'was cancelled';
  return `failed: ${cause?.message ?? err.message}`;
}
