// Vitest global setup: bundles the workflow code once for the whole run, so no test pays for
// webpack again (testkit/services.ts's workflowCode() hands the bundle to every Worker).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { repoRoot } from '../../lib/toolchain.js';

export default async function setup(): Promise<() => void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'loraflow-bundle-'));
  const { code } = await bundleWorkflowCode({ workflowsPath: path.join(repoRoot, 'workflows/index.ts'), logger: { log() {}, trace() {}, debug() {}, info() {}, warn: console.warn, error: console.error } });
  const codePath = path.join(dir, 'workflows.js');
  writeFileSync(codePath, code);
  process.env.LORAFLOW_WORKFLOW_BUNDLE = codePath;
  return () => rmSync(dir, { recursive: true, force: true });
}
