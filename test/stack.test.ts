// `loraflow dev` as a user runs it: a clear error when a port is taken, Ctrl-C stops every
// service, and state survives a restart (Temporal's SQLite file in the data directory).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { Connection, WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../cli/connect.js';
import { TrainRequest } from '../contract/pipeline.js';
import { loadConfig } from '../lib/config.js';
import { repoRoot, toolchain } from '../lib/toolchain.js';
import { startStack } from '../stack/index.js';
import { SEARCH_ATTRIBUTES } from '../workflows/definitions.js';
import { trainLora } from '../workflows/index.js';
import { stackEnv, tempDir } from '../testkit/services.js';
import { until } from '../testkit/wait.js';

let tmp: ReturnType<typeof tempDir>;
let env: Record<string, string>;

beforeAll(async () => {
  tmp = tempDir('stack');
  env = await stackEnv(tmp.dir);
});
afterAll(() => tmp?.remove());

function dev(...args: string[]): { child: ChildProcess; output: () => string; stdout: () => string } {
  let output = '';
  let stdout = '';
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'client.ts'), 'dev', ...args], { env: { ...process.env, ...env }, cwd: repoRoot });
  child.stdout!.on('data', (d: Buffer) => ((output += d.toString()), (stdout += d.toString())));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  return { child, output: () => output, stdout: () => stdout };
}

/** Resolves when the process has exited, also when it did before this was called (an 'exit' listener added late never fires). */
const exited = (child: ChildProcess) => new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(undefined) : child.once('exit', r)));

async function untilReady(proc: ReturnType<typeof dev>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path.join(env.LORAFLOW_DATA_DIR!, 'stack.ready'))) {
    if (proc.child.exitCode !== null) throw new Error(`dev exited: ${proc.output()}`);
    if (Date.now() > deadline) throw new Error(`dev not ready: ${proc.output()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const portIsFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const server = net.createServer().once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });

describe('loraflow dev', () => {
  it('refuses to start when a port is taken, naming the port, the service and the variable', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(Number(env.LORAFLOW_S3_PORT), '127.0.0.1', r));
    try {
      await expect(startStack({ env })).rejects.toThrow(`port ${env.LORAFLOW_S3_PORT} (S3) is in use: stop what holds it or set LORAFLOW_S3_PORT`);
    } finally {
      blocker.close();
    }
  });

  it('registers the search attributes that a data dir from an older loraflow lacks', async () => {
    const old = tempDir('stack-old');
    const oldEnv = await stackEnv(old.dir);
    const dataDir = oldEnv.LORAFLOW_DATA_DIR!;
    mkdirSync(dataDir, { recursive: true });
    const address = `127.0.0.1:${oldEnv.TEMPORAL_PORT}`;
    const attributes = async () => {
      const connection = await Connection.connect({ address });
      try {
        return Object.keys((await connection.operatorService.listSearchAttributes({ namespace: 'default' })).customAttributes ?? {});
      } finally {
        await connection.close();
      }
    };
    // The database as an older loraflow left it: only the first two attributes.
    const server = spawn(toolchain.temporal(), ['server', 'start-dev', '--headless', '--db-filename', path.join(dataDir, 'temporal.db'), '--ip', '127.0.0.1', '--port', oldEnv.TEMPORAL_PORT!, '--search-attribute', 'LoraStage=Keyword', '--search-attribute', 'LoraName=Keyword'], { stdio: 'ignore' });
    try {
      expect(await until(() => attributes().catch((): string[] => []), (a) => a.includes('LoraName'), 60_000)).not.toContain('LoraDatasetHash');
    } finally {
      server.kill('SIGTERM');
      await exited(server);
    }
    const stack = await startStack({ env: oldEnv, withWorker: false });
    try {
      expect((await attributes()).sort()).toEqual(expect.arrayContaining(SEARCH_ATTRIBUTES.map((k) => k.name)));
    } finally {
      await stack.stop();
      old.remove();
    }
  });

  it('stops every service on Ctrl-C and keeps pipelines across a restart', async () => {
    const first = dev();
    await untilReady(first);
    expect(first.output()).toContain('loraflow stack is up');

    // A pipeline that fails fast in ingest (no such dataset): no GPU time needed to leave state behind.
    const config = loadConfig({ ...process.env, ...env, TEMPORAL_ADDRESS: `127.0.0.1:${env.TEMPORAL_PORT}` });
    const client = await connect(config);
    const request = TrainRequest.parse({ name: 'persist', dataset: { path: path.join(tmp.dir, 'missing'), fingerprint: 'b'.repeat(64) }, training: { triggerWord: 'lfp', baseModel: 'tiny-sd', params: {} } });
    const handle = await client.workflow.start(trainLora, { taskQueue: config.LORAFLOW_TASK_QUEUE, workflowId: 'persist-1', args: [request] });
    await expect(handle.result()).rejects.toThrow(WorkflowFailedError);
    await client.connection.close();

    first.child.kill('SIGINT');
    await exited(first.child);
    expect(first.child.exitCode).toBe(0);
    for (const port of Object.entries(env).filter(([k]) => k.endsWith('PORT')).map(([, v]) => Number(v))) expect(await portIsFree(port), `port ${port}`).toBe(true);
    expect(existsSync(path.join(env.LORAFLOW_DATA_DIR!, 'stack.ready'))).toBe(false);

    const second = dev('--json');
    try {
      await untilReady(second);
      // --json: the addresses as one line on stdout; the worker's metrics endpoint answers.
      await until(() => second.stdout(), (out) => out.includes('\n'), 10_000);
      const addresses = JSON.parse(second.stdout().trim()) as Record<string, string>;
      expect(addresses).toMatchObject({ temporal: `127.0.0.1:${env.TEMPORAL_PORT}`, webUi: `http://127.0.0.1:${env.TEMPORAL_UI_PORT}`, metrics: `http://127.0.0.1:${env.LORAFLOW_METRICS_PORT}/metrics` });
      const metrics = await until(() => fetch(addresses.metrics!).then((r) => r.text(), () => ''), (text) => text.includes('temporal_'), 60_000);
      expect(metrics).toContain('temporal_');
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'client.ts'), 'status', 'persist-1', '--json'], {
        env: { ...process.env, ...env, TEMPORAL_ADDRESS: `127.0.0.1:${env.TEMPORAL_PORT}` },
        cwd: repoRoot,
      });
      expect(JSON.parse(stdout)).toMatchObject({ status: 'FAILED', stage: 'failed', error: expect.stringContaining('dataset not found') });
    } finally {
      second.child.kill('SIGINT');
      await exited(second.child);
    }
  });
});
