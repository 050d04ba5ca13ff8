// After the storm: what the endpoint's ledger, S3 and Temporal say about the promise
// "a GPU minute paid once is never lost and never paid twice".
import type { PublishedLora } from '../contract/pipeline.js';
import { keyOfUri } from '../lib/keys.js';
import { getJson, listKeys, makeStorage, sha256OfObject } from '../lib/s3.js';
import type { LedgerEntry } from '../runpod-local/index.js';
import type { Stack } from '../stack/index.js';
import type { ChaosOptions } from './options.js';

export interface PipelineOutcome {
  workflowId: string;
  status: string;
  cancelRequested: boolean;
  result?: PublishedLora;
  error?: string;
}

export interface ChaosRow {
  metric: string;
  value: string;
  target: string;
  ok: boolean;
}

export interface ChaosReport {
  ok: boolean;
  rows: ChaosRow[];
  faults: string[];
  outcomes: PipelineOutcome[];
  elapsedSeconds: number;
}

const ms = (iso?: string) => (iso ? Date.parse(iso) : Number.NaN);

export async function audit(input: { stack: Stack; outcomes: PipelineOutcome[]; faults: string[]; opts: ChaosOptions; elapsedMs: number }): Promise<ChaosReport> {
  const { stack, outcomes, opts } = input;
  const storage = makeStorage(stack.config);
  const ledger = stack.runpod.ledger();
  const trains = ledger.filter((e) => e.task === 'train');

  // Every train job claims its training before working: the claims say which pipeline paid for it.
  const owner = new Map<string, string>();
  for (const o of outcomes) {
    const claims = (await listKeys(storage, `runs/${o.workflowId}/`)).filter((k) => /\/train\/\d+\/claim\.json$/.test(k));
    for (const key of claims) owner.set((await getJson<{ jobId: string }>(storage, key)).jobId, o.workflowId);
  }
  const jobsOf = (wf: string) => trains.filter((e) => owner.get(e.id) === wf);
  const worked = (e: LedgerEntry) => e.progressUpdates > 0;

  const published = outcomes.filter((o) => o.status === 'COMPLETED');
  const cancelledAsAsked = outcomes.filter((o) => o.cancelRequested && o.status === 'CANCELLED');
  const finished = published.length + cancelledAsAsked.length;

  // Two jobs of one training working at the same time = a GPU minute paid twice.
  let duplicates = 0;
  for (const o of outcomes) {
    const working = jobsOf(o.workflowId).filter(worked).sort((a, b) => ms(a.takenAt) - ms(b.takenAt));
    for (let i = 1; i < working.length; i++) if (ms(working[i]!.takenAt) < ms(working[i - 1]!.finishedAt)) duplicates++;
  }
  const unclaimedWork = trains.filter((e) => worked(e) && !owner.has(e.id)).length;
  const orphans = ledger.filter((e) => e.status === 'IN_QUEUE' || e.status === 'IN_PROGRESS').length;

  // Steps paid beyond the training's length, per GPU fault (a job of the pipeline that FAILED).
  let worstLossPerFault = 0;
  let lostWithoutFault = 0;
  let gpuFaults = 0;
  for (const o of published) {
    const jobs = jobsOf(o.workflowId);
    const faults = jobs.filter((e) => e.status === 'FAILED').length;
    const lost = jobs.reduce((n, e) => n + e.progressUpdates, 0) - opts.steps;
    gpuFaults += faults;
    if (faults === 0) lostWithoutFault += Math.max(0, lost);
    else worstLossPerFault = Math.max(worstLossPerFault, lost / faults);
  }

  const paidSeconds = trains.reduce((s, e) => s + Math.max(0, (ms(e.finishedAt) - ms(e.takenAt)) / 1000 || 0), 0);
  const idealSeconds = (published.length * opts.steps * opts.msPerStep) / 1000;

  let artifactsLost = 0;
  for (const o of published) {
    const stored = o.result && (await sha256OfObject(storage, keyOfUri(o.result.uri)));
    if (!stored || stored.sha256 !== o.result!.sha256) artifactsLost++;
  }

  const rows: ChaosRow[] = [
    { metric: 'pipelines started', value: String(outcomes.length), target: '', ok: true },
    { metric: 'finished (published, or cancelled as asked)', value: `${finished} (${published.length} published, ${cancelledAsAsked.length} cancelled)`, target: `${outcomes.length} (100%)`, ok: finished === outcomes.length },
    { metric: 'failed or not closed', value: outcomes.filter((o) => o.status !== 'COMPLETED' && !(o.cancelRequested && o.status === 'CANCELLED')).map((o) => `${o.workflowId}:${o.status}`).join(' ') || '0', target: '0', ok: finished === outcomes.length },
    { metric: 'GPU train jobs (all submissions)', value: `${trains.length} (${trains.filter(worked).length} did work)`, target: '', ok: true },
    { metric: 'duplicate GPU jobs (same training, overlapping work)', value: String(duplicates), target: '0', ok: duplicates === 0 },
    { metric: 'GPU work without a claim', value: String(unclaimedWork), target: '0', ok: unclaimedWork === 0 },
    { metric: 'orphan GPU jobs left running', value: String(orphans), target: '0', ok: orphans === 0 },
    { metric: 'GPU faults hitting trainings', value: String(gpuFaults), target: '', ok: true },
    { metric: 'steps lost per GPU fault (worst)', value: worstLossPerFault.toFixed(1), target: `≤ ${opts.checkpointEvery} (one checkpoint interval)`, ok: worstLossPerFault <= opts.checkpointEvery },
    { metric: 'steps paid twice without a GPU fault', value: String(lostWithoutFault), target: '0', ok: lostWithoutFault === 0 },
    { metric: 'GPU seconds paid vs fault-free ideal', value: `${paidSeconds.toFixed(1)} s vs ${idealSeconds.toFixed(1)} s (×${(paidSeconds / Math.max(idealSeconds, 1e-9)).toFixed(2)})`, target: 'report', ok: true },
    { metric: 'artifacts lost (published but missing or wrong sha256)', value: String(artifactsLost), target: '0', ok: artifactsLost === 0 },
  ];
  return { ok: rows.every((r) => r.ok), rows, faults: input.faults, outcomes, elapsedSeconds: Math.round(input.elapsedMs / 1000) };
}

export function formatReport(report: ChaosReport): string {
  const width = Math.max(...report.rows.map((r) => r.metric.length));
  const lines = report.rows.map((r) => `${r.ok ? 'ok  ' : 'FAIL'}  ${r.metric.padEnd(width)}  ${r.value}${r.target ? `   (target ${r.target})` : ''}`);
  return [`chaos: ${report.faults.length} faults injected in ${report.elapsedSeconds} s`, ...report.faults.map((f) => `  - ${f}`), '', ...lines, '', report.ok ? 'chaos: every target met' : 'chaos: TARGETS MISSED'].join('\n');
}
