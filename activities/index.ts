// Activities bound to their dependencies, the way Temporal's samples inject clients.
import { captionDataset } from './caption.js';
import { cancelGpuJobs } from './cleanup.js';
import type { ActivityDeps } from './deps.js';
import { generateOnGpu, resolveLoras, storeGeneration } from './generate.js';
import { pushToHub } from './hub.js';
import { ingestDataset } from './ingest.js';
import { resolveInitFrom } from './init-from.js';
import { cancelOrphanGpuJobs } from './janitor.js';
import { latestPublished, publishLora } from './publish.js';
import { writeReport } from './report.js';
import { trainOnGpu } from './train.js';
import { watchSchedule } from './schedule-webhooks.js';
import { deliverWebhook, watchTraining } from './webhooks.js';

const STAGES = { ingestDataset, captionDataset, trainOnGpu, publishLora, latestPublished, resolveInitFrom, writeReport, pushToHub, cancelGpuJobs, cancelOrphanGpuJobs, watchTraining, deliverWebhook, watchSchedule, resolveLoras, generateOnGpu, storeGeneration };

type Bound<F> = F extends (deps: ActivityDeps, input: infer I) => infer R ? (input: I) => R : never;
export type Activities = { [K in keyof typeof STAGES]: Bound<(typeof STAGES)[K]> };

export function createActivities(deps: ActivityDeps): Activities {
  return Object.fromEntries(Object.entries(STAGES).map(([name, fn]) => [name, (input: never) => fn(deps, input)])) as Activities;
}

export { activityDepsFrom, type ActivityDeps } from './deps.js';
