// The chaos suite's short mode in every test run (`make chaos` runs the full one): many pipelines
// under injected faults must all finish, with no duplicate or orphan GPU job and nothing lost.
import { describe, expect, it } from 'vitest';
import { formatReport } from '../chaos/audit.js';
import { QUICK, runChaos } from '../chaos/suite.js';

describe('chaos (short mode)', () => {
  it('keeps every promise while the stack is being broken', async () => {
    const report = await runChaos(QUICK);
    console.log(formatReport(report));
    expect(report.faults.length).toBeGreaterThanOrEqual(8);
    expect(report.rows.filter((r) => !r.ok).map((r) => `${r.metric}: ${r.value}`)).toEqual([]);
  }, 10 * 60_000);
});
