// A GPU stage's wait (activities/gpu-wait.ts) heartbeats what is new at once and the same details
// only at the keep-alive pace: each heartbeat is an RPC the Temporal server pays for.
import { MockActivityEnvironment } from '@temporalio/testing';
import { describe, expect, it } from 'vitest';
import type { ActivityDeps } from '../../activities/deps.js';
import type { GpuHeartbeat } from '../../activities/gpu-progress.js';
import { waitUntilFinished } from '../../activities/gpu-wait.js';
import { KeepAlivePacer } from '../../lib/keep-alive.js';
import { RunpodJobNotFound, RunpodJobStatus } from '../../lib/runpod-client.js';

/** A job whose status is answered every 10 ms for `ms`, its step moving once halfway, then gone. */
function depsFor(ms: number): ActivityDeps {
  const started = Date.now();
  const watch = async (id: string): Promise<RunpodJobStatus> => {
    await new Promise((r) => setTimeout(r, 10));
    const at = Date.now() - started;
    if (at > ms) throw new RunpodJobNotFound(id, `job ${id} is not known`);
    return RunpodJobStatus.parse({ id, status: 'IN_PROGRESS', output: { phase: 'training', step: at > ms / 2 ? 2 : 1, totalSteps: 10 } });
  };
  return {
    runpod: { watch },
    gpuJobs: { keepAlive: new KeepAlivePacer({ minMs: 200, maxMs: 200, perSecond: 1 }), statusWaitMs: 50, pollIntervalMs: 10 },
  } as unknown as ActivityDeps;
}

describe('waiting on a GPU job', () => {
  it('heartbeats a change at once, and unchanged details at the keep-alive pace only', async () => {
    const env = new MockActivityEnvironment();
    const beats: GpuHeartbeat[] = [];
    env.on('heartbeat', (d: GpuHeartbeat) => beats.push(d));
    const start: GpuHeartbeat = { generation: 0, failures: 0, endpointId: 'local', gpuJobId: 'job-1' };
    const lost = await env.run(() => waitUntilFinished(depsFor(1_000), 'runs/r', 'job-1', start, async () => {}));
    expect(lost).toBeUndefined(); // the endpoint forgot the job: the caller's part
    // ~100 answers in 1 s; one heartbeat per answer before. Now: the two changes, and keep-alives
    // at most every 100 ms (half the 200 ms pace).
    expect(beats.length).toBeGreaterThanOrEqual(3);
    expect(beats.length).toBeLessThanOrEqual(14);
    const steps = beats.map((b) => b.progress?.step);
    expect(steps[0]).toBe(1);
    expect(steps).toContain(2);
  });
});
