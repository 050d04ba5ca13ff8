// The GPU-slot lease workflow on the real Temporal dev server, asked the way a busy worker process
// asks it: hundreds of stages at once. Their requests go in batches (one Update in flight), so
// they are all answered in seconds; one Update per stage would abort each other's workflow tasks
// and barely progress.
import { Worker } from '@temporalio/worker';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { slotRequests } from '../activities/gpu-slots.js';
import { startTemporal, workflowCode } from '../testkit/services.js';
import { slotHoldersQuery } from '../workflows/gpu-slots.js';

const taskQueue = 'gpu-slots-test';
let env: TestWorkflowEnvironment;
let worker: Worker;
let running: Promise<void>;

beforeAll(async () => {
  env = await startTemporal();
  worker = await Worker.create({ connection: env.nativeConnection, taskQueue, ...workflowCode() });
  running = worker.run();
}, 120_000);
afterAll(async () => {
  worker?.shutdown();
  await running;
  await env?.teardown();
});

describe('GPU slots', () => {
  it('answers 300 stages asking at once within the cap, and hands freed slots to the ones waiting', async () => {
    const workflowId = 'slots-300';
    const requests = slotRequests(env.client, workflowId, taskQueue, false);
    const holders = Array.from({ length: 300 }, (_, i) => `run-${i}/train`);
    const started = Date.now();
    const first = await Promise.all(holders.map((h) => requests.ask(h, 200)));
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(first.filter(Boolean)).toHaveLength(200);
    const held = holders.filter((_, i) => first[i]);
    const waiting = holders.filter((_, i) => !first[i]);
    // Asking again keeps a slot (a renewal); the ones refused are still refused.
    expect(await Promise.all(held.slice(0, 5).map((h) => requests.ask(h, 200)))).toEqual([true, true, true, true, true]);
    expect(await requests.ask(waiting[0]!, 200)).toBe(false);

    await Promise.all(held.slice(0, 50).map((h) => requests.giveBack(h)));
    const second = await Promise.all(waiting.map((h) => requests.ask(h, 200)));
    expect(second.filter(Boolean)).toHaveLength(50);
    const listed = await env.client.workflow.getHandle(workflowId).query(slotHoldersQuery);
    expect(listed).toHaveLength(200);
    expect(listed).not.toContain(held[0]);
  }, 60_000);
});
