// Where `make setup` put the programs and models loraflow runs; each can be overridden.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function tool(envVar: string, relative: string): string {
  const found = process.env[envVar] ?? path.join(repoRoot, relative);
  if (!existsSync(found)) throw new Error(`${found} not found: run \`make setup\` (or set ${envVar})`);
  return found;
}

export const toolchain = {
  temporal: () => tool('LORAFLOW_TEMPORAL_BIN', '.tools/bin/temporal'),
  /** Temporal's time-skipping test server (the Java SDK's, started by a launcher script). */
  temporalTestServer: () => tool('LORAFLOW_TEMPORAL_TEST_SERVER', '.tools/bin/temporal-test-server'),
  versitygw: () => tool('LORAFLOW_VERSITYGW_BIN', '.tools/bin/versitygw'),
  python: () => tool('LORAFLOW_PYTHON', '.tools/pyenv/bin/python'),
  modelDir: () => tool('LORAFLOW_MODEL_DIR', '.tools/models'),
  gpuWorker: () => path.join(repoRoot, 'gpu-worker', 'handler.py'),
};

/**
 * Dev-server flags loraflow relies on: the task-queue matcher that dispatches queued tasks in
 * priority order (runs' priorityKey), which this server version only uses when asked, and one
 * partition per task queue, since priority orders tasks within a partition only (a local stack
 * needs no more).
 */
export const TEMPORAL_DEV_SERVER_FLAGS = [
  '--dynamic-config-value', 'matching.useNewMatcher=true',
  '--dynamic-config-value', 'matching.numTaskqueueReadPartitions=1',
  '--dynamic-config-value', 'matching.numTaskqueueWritePartitions=1',
];
