import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
const env = await TestWorkflowEnvironment.createTimeSkipping({ server: { executable: { type: 'existing-path', path: '/work/main/.tools/bin/temporal-test-server' } } });
let n = 0;
const w = await Worker.create({ connection: env.nativeConnection, taskQueue: 'tq', workflowsPath: '/work/main/tmp-ts/wf.ts', activities: { flaky: async () => { if (++n < 4) throw new Error('no'); return 'ok'; } } });
await w.runUntil(async () => {
  let t = Date.now();
  console.log(await env.client.workflow.execute('sleeper', { taskQueue: 'tq', workflowId: 's' }), Date.now() - t);
  t = Date.now();
  console.log(await env.client.workflow.execute('retrier', { taskQueue: 'tq', workflowId: 'r' }), Date.now() - t, n);
});
await env.teardown();
