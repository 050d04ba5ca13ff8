import path from 'node:path';
import { readFileSync } from 'node:fs';
import { connect } from '../cli/connect.js';
import { startStack } from '../stack/index.js';
import { stackEnv, tempDir } from '../testkit/services.js';
import { repoRoot, toolchain } from '../lib/toolchain.js';
import { makeDataset } from '../testkit/datasets.js';
import { TrainRequest } from '../contract/pipeline.js';
import { status } from '../cli/inspect.js';
const mode = process.argv[2];
const tmp = tempDir('dbg');
const stack = await startStack({ env: { ...(await stackEnv(tmp.dir)), LORAFLOW_POLL_MS: '500', LORAFLOW_CHECKPOINT_EVERY: '5' }, gpuWorkerCommand: [toolchain.python(), '-u', path.join(repoRoot, 'test/fixtures/scripted_gpu_handler.py')], gpuWorkers: 3 });
const client = await connect(stack.config);
const ids: string[] = [];
for (let i = 0; i < 4; i++) {
  const ds = await makeDataset(path.join(tmp.dir, `ds${i}`), { images: 3, captioned: i % 3 === 0 ? 0 : 3, size: 16 + i });
  const h = await client.workflow.start('trainLora', { taskQueue: 'loraflow', workflowId: `d${i}`, args: [TrainRequest.parse({ name: `d${i}`, dataset: { path: ds, fingerprint: 'a'.repeat(64) }, training: { triggerWord: 'lfx', baseModel: 'scripted', params: { steps: 40, seed: 100 } } })] });
  ids.push(h.workflowId);
}
await new Promise((r) => setTimeout(r, 3000));
if (mode === 'temporal') { await stack.restartTemporal(2000); console.log('temporal restarted'); }
if (mode === 's3') { await stack.stopS3(); await new Promise((r) => setTimeout(r, 10000)); await stack.startS3(); console.log('s3 back'); }
if (mode === 'worker') { stack.worker!.child.kill('SIGKILL'); await new Promise((r) => setTimeout(r, 500)); await stack.startWorker(); console.log('worker restarted'); }
if (mode === 'gpukill') { const t = stack.runpod.ledger().find((e) => e.task === 'train' && e.status === 'IN_PROGRESS'); const v = t && stack.runpod.workers().find((w) => w.workerId === t.workerId && w.pid); if (v) { process.kill(v.pid!, 'SIGKILL'); console.log('killed', v.workerId); } }
if (mode === 'resultcrash') { stack.runpod.endpoint().setFaults({ workerCrash: { at: 'result', times: 1, task: 'train' } }); console.log('result crash'); }
if (mode === 'api') { stack.runpod.endpoint().setFaults({ api: { throttleRate: 0.15, errorRate: 0.1, errorStatus: 503, latencyMs: 150 } }); console.log('api faults'); }
for (let t = 0; t < 20; t++) {
  await new Promise((r) => setTimeout(r, 3000));
  const ss = await Promise.all(ids.map((id) => status(client, id).then((s) => `${s.stage}:${s.step ?? ''}`, (e) => 'ERR ' + String(e).slice(0, 80))));
  console.log(t, ss.join(' | '));
  if (ss.every((s) => s.startsWith('published'))) break;
}
console.log(readFileSync(path.join(stack.logDir, 'worker.log'), 'utf8').split('\n').filter((l) => /"level":(40|50)/.test(l)).slice(-15).join('\n').slice(0, 5000));
await stack.stop(); tmp.remove();
