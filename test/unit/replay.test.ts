// Today's workflow code against the recorded baselines, one per outcome (test/histories/): a change
// that would break runs already in flight fails here. Recorded on the real server by the
// integration tests with LORAFLOW_RECORD_HISTORIES=1 (testkit/histories.ts).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { temporal } from '@temporalio/proto';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils.js';
import { DeterminismViolationError } from '@temporalio/workflow';
import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { historiesDir, OUTCOMES, type Outcome } from '../../testkit/histories.js';
import { workflowCode } from '../../testkit/services.js';

type History = temporal.api.history.v1.IHistory;
const load = (outcome: Outcome): History => historyFromJSON(JSON.parse(readFileSync(path.join(historiesDir, `${outcome}.json`), 'utf8')));
const replay = (history: History, id: string) => Worker.runReplayHistory(workflowCode(), history, id);

/** How each outcome's history ends. */
const CLOSING: Record<Outcome, keyof temporal.api.history.v1.IHistoryEvent> = {
  published: 'workflowExecutionCompletedEventAttributes',
  skipped: 'workflowExecutionCompletedEventAttributes',
  failed: 'workflowExecutionFailedEventAttributes',
  cancelled: 'workflowExecutionCanceledEventAttributes',
  'caption-review': 'workflowExecutionCompletedEventAttributes',
  generated: 'workflowExecutionCompletedEventAttributes',
  'generate-cancelled': 'workflowExecutionCanceledEventAttributes',
  'webhooks-delivered': 'workflowExecutionCompletedEventAttributes',
  'schedule-webhooks': 'workflowExecutionCompletedEventAttributes',
};

describe('workflow replay', () => {
  for (const outcome of OUTCOMES) {
    it(`replays the recorded ${outcome} run without nondeterminism`, async () => {
      const history = load(outcome);
      expect(history.events!.at(-1)![CLOSING[outcome]], `${outcome}.json does not end as ${outcome}`).toBeTruthy();
      await replay(history, outcome);
    });

    // The negative twin: the same history with its first activity renamed no longer replays.
    it(`fails on the ${outcome} run with its first activity renamed`, async () => {
      const history = load(outcome);
      const first = history.events!.find((e) => e.activityTaskScheduledEventAttributes)!.activityTaskScheduledEventAttributes!;
      first.activityType!.name = `${first.activityType!.name}Renamed`;
      await expect(replay(history, `${outcome}-altered`)).rejects.toBeInstanceOf(DeterminismViolationError);
    });
  }

  it('fails on an altered history: a recorded activity the code does not schedule', async () => {
    const history = load('published');
    const scheduled = history.events!.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'captionDataset')!;
    scheduled.activityTaskScheduledEventAttributes!.activityType!.name = 'trainOnGpu';
    await expect(replay(history, 'altered')).rejects.toBeInstanceOf(DeterminismViolationError);
  });
});
