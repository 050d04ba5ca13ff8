// Recorded workflow histories (test/histories/<outcome>.json): the baselines that today's workflow
// code must still replay (test/unit/replay.test.ts). The integration tests that end a run in each
// outcome write them when LORAFLOW_RECORD_HISTORIES=1; commit them only with a new workflow version.
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { repoRoot } from '../lib/toolchain.js';

/** trainLora's four outcomes and a run paused for a caption review, a deliverWebhooks run that
 * delivered every event to a receiver that was down for a while, a scheduleWebhooks run that handed
 * a triggered run to its delivery until the schedule was deleted, and generateImages completed and
 * cancelled. */
export const OUTCOMES = ['published', 'skipped', 'failed', 'cancelled', 'caption-review', 'webhooks-delivered', 'schedule-webhooks', 'generated', 'generate-cancelled'] as const;
export type Outcome = (typeof OUTCOMES)[number];
export const historiesDir = path.join(repoRoot, 'test/histories');

/** Writes the run's history as the baseline for `outcome`, when recording is asked for. Worker
 * identities (`pid@host`, also in sticky queue names) and the checkout's path in stack traces are
 * replaced: the file names no machine. */
export async function recordHistory(handle: WorkflowHandle, outcome: Outcome): Promise<void> {
  if (process.env.LORAFLOW_RECORD_HISTORIES !== '1') return;
  const json = historyToJSON(await handle.fetchHistory())
    .replace(new RegExp(`\\d+@${os.hostname().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'g'), 'worker@recorder')
    .replaceAll(repoRoot, '<repo>'); // failures' stack traces name the checkout
  writeFileSync(path.join(historiesDir, `${outcome}.json`), `${json}\n`);
}
