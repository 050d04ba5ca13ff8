// `loraflow dev` / `make dev`: the embedded stack in the foreground until Ctrl-C.
// data/stack.ready exists while it is up, so scripts (make demo) can wait for it.
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../lib/config.js';
import { startStack } from './index.js';

/** `json`: also print the stack's addresses as one JSON line on stdout once it is up. */
export async function runDev(opts: { json?: boolean } = {}): Promise<void> {
  const dataDir = path.resolve(loadConfig().LORAFLOW_DATA_DIR);
  const ready = path.join(dataDir, 'stack.ready');
  rmSync(ready, { force: true });
  const stack = await startStack({ say: (msg) => console.error(`dev: ${msg}`) });
  writeFileSync(path.join(dataDir, 'stack.pid'), String(process.pid));
  writeFileSync(ready, JSON.stringify({ pid: process.pid, webUi: stack.webUi, runpod: stack.runpod.url }));
  const metrics = `http://${stack.config.LORAFLOW_METRICS_ADDRESS}/metrics`;
  console.error(`
loraflow stack is up (data in ${dataDir}, logs in ${stack.logDir})
  Temporal     ${stack.config.TEMPORAL_ADDRESS}   Web UI ${stack.webUi}
  S3           ${stack.config.LORAFLOW_S3_ENDPOINT}   bucket ${stack.config.LORAFLOW_S3_BUCKET}
  RunPod API   ${stack.runpod.url}   endpoints ${(stack.config.LORAFLOW_ENDPOINTS ?? [{ id: stack.config.RUNPOD_ENDPOINT_ID }]).map((e) => e.id).join(', ')}
  loraflow API ${stack.api.url}   OpenAPI ${stack.api.url}/openapi.json   RunPod gateway ${stack.api.url}/v2${stack.api.token ? `   token "${stack.api.token}" (local only)` : ''}
  Metrics      ${metrics}
Press Ctrl-C to stop.`);
  if (opts.json) {
    const { config } = stack;
    console.log(JSON.stringify({ pid: process.pid, temporal: config.TEMPORAL_ADDRESS, webUi: stack.webUi, s3: config.LORAFLOW_S3_ENDPOINT, bucket: config.LORAFLOW_S3_BUCKET, runpod: stack.runpod.url, endpointId: config.RUNPOD_ENDPOINT_ID, metrics, api: stack.api.url, dataDir, logDir: stack.logDir }));
  }

  let stopping = false;
  const shutdown = async (why: string) => {
    if (stopping) return;
    stopping = true;
    console.error(`dev: ${why}, stopping every service`);
    rmSync(ready, { force: true });
    rmSync(path.join(dataDir, 'stack.pid'), { force: true });
    await stack.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('interrupted'));
  process.on('SIGTERM', () => void shutdown('terminated'));
  stack.worker?.child.once('exit', (code, signal) => void shutdown(`the Temporal worker exited (${code ?? signal}): see ${stack.logDir}/worker.log`));
  await new Promise(() => {});
}
