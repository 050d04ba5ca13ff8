// Worker Versioning on the real dev server, the way docs/operations.md ships a workflow change: a
// run started on build A stays PINNED to A's workers (workflow tasks and activities, GPU stages
// included) after build B becomes current through the operator command; new runs go to B.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { WorkflowHandle } from '@temporalio/client';
import proto from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TrainRequest } from '../contract/pipeline.js';
import { toolchain } from '../lib/toolchain.js';
import { makeDataset } from '../testkit/datasets.js';
import { type PipelineFixture, startPipelineFixture } from '../testkit/services.js';
import { until } from '../testkit/wait.js';
import { progressQuery } from '../workflows/definitions.js';

let f: PipelineFixture;
let dataset: string;
const taskQueue = 'versioned';
const deploymentName = 'loraflow-test';

beforeAll(async () => {
  f = await startPipelineFixture('versioning');
  dataset = await makeDataset(path.join(f.tmp.dir, 'dataset'), { images: 2, captioned: 2 });
});
afterAll(() => f?.stop());

/** Starts both of loraflow's workers as one version, identified as `build-<id>` in history. */
const serveBuild = (buildId: string) => f.serve(taskQueue, { worker: { deploymentVersion: { deploymentName, buildId }, identity: `build-${buildId}` } });

/** What an operator runs to make a build current (retried until its pollers are registered). */
const makeCurrent = (buildId: string) =>
  until(
    () =>
      promisify(execFile)(toolchain.temporal(), ['worker', 'deployment', 'set-current-version', '--address', f.env.address, '--deployment-name', deploymentName, '--build-id', buildId, '--yes']).then(
        () => true,
        () => false,
      ),
    Boolean,
    30_000,
    500,
  );

/** Who ran the run's workflow tasks and activities, and the version it is pinned to. */
async function ranOn(handle: WorkflowHandle) {
  const history = await handle.fetchHistory();
  const identities = new Set(
    history.events!.flatMap((e) => [e.workflowTaskCompletedEventAttributes?.identity, e.activityTaskStartedEventAttributes?.identity]).filter((i): i is string => !!i),
  );
  const info = (await handle.describe()).raw.workflowExecutionInfo?.versioningInfo;
  return { identities: [...identities], behavior: info?.behavior, buildId: info?.deploymentVersion?.buildId };
}

const PINNED = proto.temporal.api.enums.v1.VersioningBehavior.VERSIONING_BEHAVIOR_PINNED;
const request = (steps: number) => TrainRequest.parse({ name: 'versioned', dataset: { path: dataset, fingerprint: 'e'.repeat(64) }, training: { triggerWord: 'lfver', baseModel: 'tiny-sd', params: { steps, seed: 20 } } });

describe('Worker Versioning', () => {
  it('keeps a running pipeline on the build it started on while new runs go to the current build', async () => {
    await serveBuild('a');
    await makeCurrent('a');
    const first = await f.start(taskQueue, request(400));
    await until(() => first.query(progressQuery), (p) => p.stage === 'train' && (p.step ?? 0) > 0, 60_000, 200);

    await serveBuild('b');
    await makeCurrent('b');
    const second = await f.start(taskQueue, request(5));
    await Promise.all([first.result(), second.result()]);

    // PINNED: every task of the first run, before and after B became current, ran on A.
    expect(await ranOn(first)).toEqual({ identities: ['build-a'], behavior: PINNED, buildId: 'a' });
    expect(await ranOn(second)).toEqual({ identities: ['build-b'], behavior: PINNED, buildId: 'b' });
  });
});
