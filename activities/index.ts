// Activities bound to their dependencies, the way Temporal's samples inject clients.
import { captionDataset } from './caption.js';
import { cancelGpuJobs } from './cleanup.js';
import type { ActivityDeps } from './deps.js';
import { pushToHub } from './hub.js';
import { ingestDataset } from './ingest.js';
import { latestPublished, publishLora } from './publish.js';
import { writeReport } from './report.js';
import { trainOnGpu } from './train.js';

export function createActivities(deps: ActivityDeps) {
  return {
    ingestDataset: (input: Parameters<typeof ingestDataset>[1]) => ingestDataset(deps, input),
    captionDataset: (input: Parameters<typeof captionDataset>[1]) => captionDataset(deps, input),
    trainOnGpu: (input: Parameters<typeof trainOnGpu>[1]) => trainOnGpu(deps, input),
    publishLora: (input: Parameters<typeof publishLora>[1]) => publishLora(deps, input),
    latestPublished: (input: Parameters<typeof latestPublished>[1]) => latestPublished(deps, input),
    writeReport: (input: Parameters<typeof writeReport>[1]) => writeReport(deps, input),
    pushToHub: (input: Parameters<typeof pushToHub>[1]) => pushToHub(deps, input),
    cancelGpuJobs: (input: Parameters<typeof cancelGpuJobs>[1]) => cancelGpuJobs(deps, input),
  };
}

export type Activities = ReturnType<typeof createActivities>;
export type { ActivityDeps } from './deps.js';
