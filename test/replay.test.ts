// Replays committed histories of finished pipelines against the current workflow code, so a
// change that would break pipelines already running fails here, not in production.
// Record a new one with: LORAFLOW_RECORD_HISTORY=v3 npx vitest run test/workflow.test.ts -t "goes ingest"
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils.js';
import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../lib/toolchain.js';

const dir = path.join(repoRoot, 'test/histories');
const files = readdirSync(dir).filter((f) => f.endsWith('.json'));

describe('workflow replay', () => {
  it('has recorded histories to replay', () => {
    expect(files.length).toBeGreaterThan(0);
  });

  it('replays every recorded history without nondeterminism', async () => {
    const histories = files.map((file) => ({ workflowId: file, history: historyFromJSON(JSON.parse(readFileSync(path.join(dir, file), 'utf8'))) }));
    let replayed = 0;
    for await (const result of Worker.runReplayHistories({ workflowsPath: path.join(repoRoot, 'workflows/index.ts') }, histories)) {
      expect(result.error, `${result.workflowId}: ${result.error}`).toBeUndefined();
      replayed++;
    }
    expect(replayed).toBe(files.length);
  });
});
