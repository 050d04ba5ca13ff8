// `loraflow schedule …`: cron-triggered retraining on Temporal Schedules. Each schedule starts
// trainLora with `onlyIfChanged`, so a run whose dataset is the one the LoRA's latest published
// version was trained on ends as "skipped: dataset unchanged" instead of paying for a training.
import { type Client, ScheduleAlreadyRunning, ScheduleNotFoundError, type ScheduleOverlapPolicy, WorkflowNotFoundError } from '@temporalio/client';
import type { TrainRequest } from '../contract/pipeline.js';
import type { Config } from '../lib/config.js';
import { sha256 } from '../lib/hash.js';
import { LoraNameKey, LoraStageKey } from '../workflows/definitions.js';
import { trainLora } from '../workflows/index.js';
import { CliError } from './connect.js';

export const OVERLAP = { skip: 'SKIP', 'buffer-one': 'BUFFER_ONE', 'allow-all': 'ALLOW_ALL' } as const satisfies Record<string, ScheduleOverlapPolicy>;
export type Overlap = keyof typeof OVERLAP;

/** Schedule ids read as what they do; the runs they start are `<id>-<scheduled time>`. */
export const scheduleIdFor = (name: string) => `retrain-${name}`;

export interface CreateScheduleOptions {
  cron: string;
  overlap?: Overlap;
  /** Default: retrain-<name>. */
  scheduleId?: string;
  /** priorityKey of the runs (1 goes first; default 4, behind manual runs' 3). */
  priority?: number;
}

/** A scheduled request: its dataset is re-read at every run, so the fingerprint names the source only. */
export function scheduledRequest(request: TrainRequest): TrainRequest {
  return { ...request, dataset: { path: request.dataset.path, fingerprint: sha256(request.dataset.path) }, onlyIfChanged: true };
}

export async function createSchedule(client: Client, config: Config, request: TrainRequest, opts: CreateScheduleOptions): Promise<{ scheduleId: string }> {
  const scheduleId = opts.scheduleId ?? scheduleIdFor(request.name);
  const overlap = OVERLAP[opts.overlap ?? 'skip'];
  if (!overlap) throw new CliError(`--overlap: expected one of ${Object.keys(OVERLAP).join(', ')}`);
  try {
    await client.schedule.create({
      scheduleId,
      spec: { cronExpressions: [opts.cron] },
      action: {
        type: 'startWorkflow',
        workflowType: trainLora,
        args: [scheduledRequest(request)],
        taskQueue: config.LORAFLOW_TASK_QUEUE,
        workflowId: scheduleId,
        typedSearchAttributes: [{ key: LoraNameKey, value: request.name }],
        // The SDK encodes an action's priority, but its options type leaves the field out.
        ...({ priority: { priorityKey: opts.priority ?? 4 } } as object),
      },
      policies: { overlap },
      // The server keeps cron expressions only as calendars: the memo remembers what was asked for.
      memo: { lora: request.name, dataset: request.dataset.path, cron: opts.cron },
    });
  } catch (err) {
    if (err instanceof ScheduleAlreadyRunning) throw new CliError(`a schedule ${scheduleId} already exists (see \`loraflow schedule list\`; delete it first to change it)`, 'conflict');
    if (err instanceof Error && /invalid|cron/i.test(err.message)) throw new CliError(`--cron: ${err.message}`);
    throw err;
  }
  return { scheduleId };
}

export interface ScheduledRun {
  workflowId: string;
  scheduledAt: string;
  status: string;
  stage: string;
  /** published, "skipped: dataset unchanged", failed, cancelled, running (<stage>), … */
  outcome: string;
}

export interface ScheduleRow {
  scheduleId: string;
  name: string;
  cron: string;
  dataset: string;
  state: 'active' | 'paused';
  note?: string;
  nextRuns: string[];
  recentRuns: ScheduledRun[];
}

/** Every schedule that starts trainLora, with its state, next runs and recent runs' outcomes. */
export async function listSchedules(client: Client): Promise<ScheduleRow[]> {
  const rows: ScheduleRow[] = [];
  for await (const summary of client.schedule.list()) {
    if (summary.action?.workflowType !== 'trainLora') continue;
    rows.push(await describeSchedule(client, summary.scheduleId));
  }
  return rows.sort((a, b) => a.scheduleId.localeCompare(b.scheduleId));
}

export async function describeSchedule(client: Client, scheduleId: string): Promise<ScheduleRow> {
  const d = await handleOf(client, scheduleId).describe().catch(notFound(scheduleId));
  const recentRuns = await Promise.all(
    d.info.recentActions.map(async (a): Promise<ScheduledRun> => {
      const workflowId = a.action.workflow.workflowId;
      const run = await runOutcome(client, workflowId, a.action.workflow.firstExecutionRunId);
      return { workflowId, scheduledAt: a.scheduledAt.toISOString(), ...run };
    }),
  );
  const args = d.action.args as TrainRequest[];
  return {
    scheduleId,
    name: args[0]?.name ?? '',
    cron: String(d.memo?.cron ?? ''),
    dataset: args[0]?.dataset.path ?? '',
    state: d.state.paused ? 'paused' : 'active',
    ...(d.state.note ? { note: d.state.note } : {}),
    nextRuns: d.info.nextActionTimes.map((t) => t.toISOString()),
    recentRuns: recentRuns.reverse(), // newest first
  };
}

async function runOutcome(client: Client, workflowId: string, runId: string): Promise<Omit<ScheduledRun, 'workflowId' | 'scheduledAt'>> {
  const described = await client.workflow.getHandle(workflowId, runId).describe().catch((err: unknown) => {
    if (err instanceof WorkflowNotFoundError) return undefined;
    throw err;
  });
  if (!described) return { status: 'UNKNOWN', stage: '', outcome: 'no longer in Temporal (retention)' };
  const status = described.status.name;
  const stage = described.typedSearchAttributes.get(LoraStageKey) ?? '';
  const outcome =
    stage === 'skipped' ? 'skipped: dataset unchanged'
    : status === 'COMPLETED' ? 'published'
    : status === 'RUNNING' ? `running (${stage || 'queued'})`
    : status.toLowerCase();
  return { status, stage, outcome };
}

const handleOf = (client: Client, scheduleId: string) => client.schedule.getHandle(scheduleId);

const notFound = (scheduleId: string) => (err: unknown): never => {
  throw err instanceof ScheduleNotFoundError ? new CliError(`no schedule with id ${scheduleId} (see \`loraflow schedule list\`)`, 'not-found') : err;
};

export async function pauseSchedule(client: Client, scheduleId: string): Promise<void> {
  await handleOf(client, scheduleId).pause('paused with loraflow schedule pause').catch(notFound(scheduleId));
}

export async function unpauseSchedule(client: Client, scheduleId: string): Promise<void> {
  await handleOf(client, scheduleId).unpause('unpaused with loraflow schedule unpause').catch(notFound(scheduleId));
}

/** Runs the schedule's action now, under the schedule's own overlap policy. */
export async function triggerSchedule(client: Client, scheduleId: string): Promise<void> {
  const handle = handleOf(client, scheduleId);
  const d = await handle.describe().catch(notFound(scheduleId));
  await handle.trigger(d.policies.overlap).catch(notFound(scheduleId));
}

/** Takes the actions the schedule would have taken between `from` and `to`. */
export async function backfillSchedule(client: Client, scheduleId: string, from: Date, to: Date): Promise<void> {
  if (!(from < to)) throw new CliError('--from must be before --to');
  const handle = handleOf(client, scheduleId);
  const d = await handle.describe().catch(notFound(scheduleId));
  await handle.backfill({ start: from, end: to, overlap: d.policies.overlap }).catch(notFound(scheduleId));
}

export async function deleteSchedule(client: Client, scheduleId: string): Promise<void> {
  await handleOf(client, scheduleId).delete().catch(notFound(scheduleId));
}

export function describeScheduleRow(row: ScheduleRow): string {
  const head = `${row.scheduleId}  ${row.state}${row.note && row.state === 'paused' ? ` (${row.note})` : ''}  cron "${row.cron}"  lora ${row.name}  next ${row.nextRuns[0] ?? '-'}`;
  const runs = row.recentRuns.map((r) => `  ${r.scheduledAt}  ${r.workflowId}  ${r.outcome}`);
  return [head, ...(runs.length ? runs : ['  no runs yet'])].join('\n');
}
