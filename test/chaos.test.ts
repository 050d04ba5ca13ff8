// The chaos suite's short mode in every test run (`make chaos` runs the full one): many pipelines
// under every drill must all finish, with every drill seen to happen, no duplicate or orphan GPU
// job (training or caption) and nothing lost; and the audit must bite: with GPU workers that skip
// their claim, the duplicates the service creates are reported.
import { describe, expect, it } from 'vitest';
import { formatReport } from '../chaos/audit.js';
import { MUTATION, QUICK, runChaos } from '../chaos/suite.js';

describe('chaos (short mode)', () => {
  it('keeps every promise while every drill breaks the stack', async () => {
    const report = await runChaos(QUICK);
    console.log(formatReport(report));
    expect(report.drills.filter((d) => !d.fired).map((d) => `${d.drill}: ${d.evidence}`)).toEqual([]);
    expect(report.rows.filter((r) => !r.ok).map((r) => `${r.metric}: ${r.value}`)).toEqual([]);
  }, 10 * 60_000);

  it('reports the duplicates when the GPU workers skip their claim (the audit can fail)', async () => {
    const report = await runChaos(MUTATION);
    console.log(formatReport(report));
    expect(report.drills.every((d) => d.fired)).toBe(true);
    const failed = report.rows.filter((r) => !r.ok).map((r) => r.metric);
    expect(failed).toEqual(expect.arrayContaining(['GPU work without a claim']));
    expect(report.ok).toBe(false);
  }, 6 * 60_000);
});
