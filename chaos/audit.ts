// After the storm: what the endpoint's ledger, S3 and Temporal say about the promise "a GPU minute
// paid once is never lost and never paid twice", for training and caption jobs alike, and whether
// every planned drill really happened.
import type { PublishedLora } from '../contract/pipeline.js';
import { keyOfUri } from '../lib/keys.js';
import { costOf, priceFor } from '../lib/pricing.js';
import { getJson, listKeys, listObjects, makeStorage, sha256OfObject } from '../lib/s3.js';
import type { LedgerAttempt, LedgerEntry } from '../runpod-local/index.js';
import type { Stack } from '../stack/index.js';
import type { DrillRecord } from './drills.js';
import type { ChaosOptions } from './options.js';

export interface PipelineOutcome {
  workflowId: string;
  status: string;
  /** A drill cancelled it (and did not start it again). */
  cancelRequested: boolean;
  /** A drill started it again after cancelling it: its new run must publish. */
  retried: boolean;
  /** The run's GPU budget, if it had one. */
  budget?: number;
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
  drills: DrillRecord[];
  outcomes: PipelineOutcome[];
  elapsedSeconds: number;
}

const ms = (iso?: string) => (iso ? Date.parse(iso) : Number.NaN);
/** An attempt did GPU work (a claimed start that got past its claim). The ledger counts progress
 * per job, so a job did work when it reported progress or completed a caption. */
const didWork = (e: LedgerEntry) => e.progressUpdates > 0 || (e.task === 'caption' && e.status === 'COMPLETED');
const overlaps = (a: LedgerAttempt, b: LedgerAttempt) => ms(a.takenAt) < (ms(b.endedAt) || Date.now()) && ms(b.takenAt) < (ms(a.endedAt) || Date.now());

export async function audit(input: { stack: Stack; outcomes: PipelineOutcome[]; drills: DrillRecord[]; opts: ChaosOptions; elapsedMs: number }): Promise<ChaosReport> {
  const { stack, outcomes, opts } = input;
  const storage = makeStorage(stack.config);
  const ledger = stack.runpod.ledger();
  const jobsBy = (task: string) => ledger.filter((e) => e.task === task);

  // Every job claims its work before any: the claims say which pipeline (and stage) paid for it.
  const owner = new Map<string, { workflowId: string; stage: string }>();
  for (const o of outcomes) {
    for (const key of (await listKeys(storage, `runs/${o.workflowId}/`)).filter((k) => /\/(train|caption)\/\d+\/claim\.json$/.test(k))) {
      owner.set((await getJson<{ jobId: string }>(storage, key)).jobId, { workflowId: o.workflowId, stage: /\/(train|caption)\//.exec(key)![1]! });
    }
  }
  const jobsOf = (wf: string, task: string) => jobsBy(task).filter((e) => owner.get(e.id)?.workflowId === wf);

  const published = outcomes.filter((o) => o.status === 'COMPLETED');
  const cancelledAsAsked = outcomes.filter((o) => o.cancelRequested && o.status === 'CANCELLED');
  const finished = published.length + cancelledAsAsked.length;

  // The same work paid twice: two jobs of one pipeline and stage working at the same time.
  let duplicates = 0;
  for (const o of outcomes) {
    for (const task of ['train', 'caption']) {
      const working = jobsOf(o.workflowId, task).filter(didWork);
      for (let i = 0; i < working.length; i++) {
        for (let j = i + 1; j < working.length; j++) {
          if (working[i]!.attempts.some((a) => working[j]!.attempts.some((b) => overlaps(a, b)))) duplicates++;
        }
      }
    }
  }
  const unclaimedWork = ledger.filter((e) => didWork(e) && !owner.has(e.id)).length;
  const orphans = ledger.filter((e) => e.status === 'IN_QUEUE' || e.status === 'IN_PROGRESS').length;

  // Steps paid beyond the training's length, per GPU fault: each start of a job after the first
  // (the service retried it: its worker died), each job that failed, each extra run of the request.
  let worstLossPerFault = 0;
  let worstLossWhere = '';
  let lostWithoutFault = 0;
  let gpuFaults = 0;
  for (const o of published) {
    const jobs = jobsOf(o.workflowId, 'train');
    const runs = new Set((await listKeys(storage, `runs/${o.workflowId}/`)).map((k) => k.split('/')[2])).size;
    const faults = jobs.reduce((n, e) => n + Math.max(0, e.attempts.length - 1) + (e.status === 'FAILED' && !/^\[CLAIMED\]/.test(errorOf(e)) ? 1 : 0), 0) + Math.max(0, runs - 1);
    const lost = jobs.reduce((n, e) => n + e.progressUpdates, 0) - opts.steps;
    gpuFaults += faults;
    if (faults === 0) lostWithoutFault += Math.max(0, lost);
    else if (lost / faults > worstLossPerFault) {
      worstLossPerFault = lost / faults;
      worstLossWhere = `${o.workflowId}: ${lost} steps over ${faults} faults, ${runs} runs; ${await lossTrail(storage, o.workflowId, jobs)}`;
    }
  }

  // Cost: every job the endpoint timed is priced at exactly what it reported (it is billed by it).
  const price = priceFor({ defaultPerHour: stack.config.LORAFLOW_GPU_PRICE_PER_HOUR, byType: stack.config.LORAFLOW_GPU_PRICES }, undefined);
  let costMismatches = 0;
  let pricedFromWorker = 0;
  for (const o of published) {
    for (const job of o.result?.usage?.jobs ?? []) {
      const entry = ledger.find((e) => e.id === job.gpuJobId);
      const last = entry?.attempts.at(-1);
      const reported = last?.endedAt && last.takenAt ? ms(last.endedAt) - ms(last.takenAt) : undefined;
      if (reported === undefined || job.executionMs === undefined) continue;
      if (Math.abs(job.executionMs - reported) <= 2 && job.cost === costOf(reported, price)) continue;
      if (Math.abs(job.executionMs - reported) > 2) pricedFromWorker++; // the endpoint had purged it: the worker's own account
      else costMismatches++;
    }
  }
  const withBudget = published.filter((o) => o.budget !== undefined && o.result?.usage);

  let artifactsLost = 0;
  for (const o of published) {
    const stored = o.result && (await sha256OfObject(storage, keyOfUri(o.result.uri)));
    if (!stored || stored.sha256 !== o.result!.sha256) artifactsLost++;
  }

  // A drill that never happened proves nothing: each must have fired, and left its trace.
  // A drill that fired without its trace says what the ledger holds for its job instead.
  const traceOf = (d: DrillRecord) => {
    const e = d.gpuJobId ? ledger.find((j) => j.id === d.gpuJobId) : undefined;
    return e ? ` (job ${e.id}: ${e.status}, ${e.attempts.map((a) => a.outcome ?? 'running').join('; ')})` : '';
  };
  const missed = input.drills.filter((d) => !d.fired || !leftItsTrace(d, ledger)).map((d) => (d.fired ? `${d.drill}${traceOf(d)}` : d.drill));
  const planned = input.drills.length;

  const trains = jobsBy('train');
  const captions = jobsBy('caption');
  const rows: ChaosRow[] = [
    { metric: 'pipelines started', value: String(outcomes.length), target: '', ok: true },
    { metric: 'finished (published, or cancelled as asked)', value: `${finished} (${published.length} published, ${cancelledAsAsked.length} cancelled, ${outcomes.filter((o) => o.retried).length} retried after a cancel)`, target: `${outcomes.length} (100%)`, ok: finished === outcomes.length },
    { metric: 'failed or not closed', value: outcomes.filter((o) => o.status !== 'COMPLETED' && !(o.cancelRequested && o.status === 'CANCELLED')).map((o) => `${o.workflowId}:${o.status}${o.error ? ` (${o.error})` : ''}`).join(' ') || '0', target: '0', ok: finished === outcomes.length },
    { metric: 'drills that happened', value: `${planned - missed.length} of ${planned}${missed.length ? ` (missed: ${missed.join(', ')})` : ''}`, target: `${planned}`, ok: missed.length === 0 },
    { metric: 'GPU jobs: train, caption (all submissions)', value: `${trains.length} (${trains.filter(didWork).length} did work), ${captions.length} (${captions.filter(didWork).length} did work)`, target: '', ok: true },
    { metric: 'duplicate GPU work (same pipeline and stage, at once)', value: String(duplicates), target: '0', ok: duplicates === 0 },
    { metric: 'GPU work without a claim', value: String(unclaimedWork), target: '0', ok: unclaimedWork === 0 },
    { metric: 'orphan GPU jobs left running', value: String(orphans), target: '0', ok: orphans === 0 },
    { metric: 'GPU faults hitting trainings', value: String(gpuFaults), target: '', ok: true },
    { metric: 'steps lost per GPU fault (worst)', value: `${worstLossPerFault.toFixed(1)}${worstLossPerFault > opts.checkpointEvery ? ` (${worstLossWhere})` : ''}`, target: `≤ ${opts.checkpointEvery} (one checkpoint interval)`, ok: worstLossPerFault <= opts.checkpointEvery },
    { metric: 'steps paid twice without a GPU fault', value: String(lostWithoutFault), target: '0', ok: lostWithoutFault === 0 },
    { metric: "jobs priced other than the endpoint's executionTime", value: `${costMismatches} (${pricedFromWorker} priced from the worker's own account: purged before it was read; ${withBudget.length} run with a budget)`, target: '0', ok: costMismatches === 0 },
    { metric: 'artifacts lost (published but missing or wrong sha256)', value: String(artifactsLost), target: '0', ok: artifactsLost === 0 },
  ];
  return { ok: rows.every((r) => r.ok), rows, drills: input.drills, outcomes, elapsedSeconds: Math.round(input.elapsedMs / 1000) };
}

const errorOf = (e: LedgerEntry) => e.error ?? '';
/** What a missed loss target needs to be understood: each job's generation and ledger line, and
 * the step each of the pipeline's checkpoints holds (the scripted worker's are JSON). */
async function lossTrail(storage: ReturnType<typeof makeStorage>, workflowId: string, jobs: LedgerEntry[]): Promise<string> {
  const records = await Promise.all((await listKeys(storage, `runs/${workflowId}/`)).filter((k) => k.includes('/gpu-jobs/')).map((k) => getJson<{ gpuJobId: string; generation: number; endpointId?: string }>(storage, k)));
  const job = (e: LedgerEntry) => {
    const r = records.find((x) => x.gpuJobId === e.id);
    return `gen ${r?.generation ?? '?'} ${e.id.slice(0, 8)} on ${e.endpointId}: ${e.status}, ${e.progressUpdates} steps, ${e.attempts.map((a) => `${a.workerId} ${a.outcome ?? 'running'}`).join(' / ')}`;
  };
  const mine = (await listObjects(storage, 'checkpoints/')).filter((o) => o.key.includes(workflowId));
  const steps = await Promise.all(mine.map(async (o) => `${o.key.split('/').at(-1)}@${o.lastModified.toISOString().slice(11, 19)}=${(await getJson<{ step?: number }>(storage, o.key).catch(() => ({}) as { step?: number })).step ?? '?'}`));
  return `jobs: ${jobs.map(job).join('; ')}; checkpoints: ${steps.join(', ')}`;
}

/** The lasting trace a drill leaves in the ledger, where it has one. */
function leftItsTrace(d: DrillRecord, ledger: LedgerEntry[]): boolean {
  const entry = d.gpuJobId ? ledger.find((e) => e.id === d.gpuJobId) : undefined;
  switch (d.drill) {
    case 'gpu-kill':
      // The service retried the job under its id: a second start after "requeued".
      return !!entry && entry.attempts.length >= 2 && /^requeued: .*SIGKILL/.test(entry.attempts[0]!.outcome ?? '');
    case 'cancel-in-429-storm':
      // Its job no longer running (cancelled, or its segment ended first while /cancel was
      // refused); the drill saw the run close CANCELLED (a later retry may publish the same id).
      return !!entry && ['CANCELLED', 'COMPLETED', 'FAILED'].includes(entry.status);
    default:
      return true;
  }
}

export function formatReport(report: ChaosReport): string {
  const width = Math.max(...report.rows.map((r) => r.metric.length));
  const lines = report.rows.map((r) => `${r.ok ? 'ok  ' : 'FAIL'}  ${r.metric.padEnd(width)}  ${r.value}${r.target ? `   (target ${r.target})` : ''}`);
  return [
    `chaos: ${report.drills.filter((d) => d.fired).length} of ${report.drills.length} drills fired in ${report.elapsedSeconds} s`,
    ...report.drills.map((d) => `  - ${d.fired ? '' : 'MISSED '}${d.drill}: ${d.evidence}`),
    '',
    ...lines,
    '',
    report.ok ? 'chaos: every target met' : 'chaos: TARGETS MISSED',
  ].join('\n');
}
