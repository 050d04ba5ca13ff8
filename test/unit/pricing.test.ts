// Pricing by GPU type and its configuration (the budget itself is tested on the real stack in
// test/workflow.test.ts).
import { describe, expect, it } from 'vitest';
import { costRows } from '../../activities/report.js';
import { loadConfig } from '../../lib/config.js';
import { costOf, formatCost, parseGpuPrices, priceFor } from '../../lib/pricing.js';

describe('GPU prices', () => {
  it('parses LORAFLOW_GPU_PRICES and names a bad entry', () => {
    expect(parseGpuPrices('H100=4.18, A100 80GB = 2.72,,L40S=1.9')).toEqual({ H100: 4.18, 'A100 80GB': 2.72, L40S: 1.9 });
    expect(parseGpuPrices('')).toEqual({});
    expect(() => loadConfig({ LORAFLOW_GPU_PRICES: 'H100=4.18,A100' })).toThrow(/LORAFLOW_GPU_PRICES.*"A100": expected GPU=price per hour/);
    expect(loadConfig({ LORAFLOW_GPU_PRICES: 'H100=4.18' }).LORAFLOW_GPU_PRICES).toEqual({ H100: 4.18 });
  });

  it('prices a job by the device it reported, the first listed type it contains, else the default', () => {
    const pricing = { defaultPerHour: 0.5, byType: { 'A100 80GB': 2.72, A100: 1.9, H100: 4.18 } };
    expect(priceFor(pricing, 'cuda:NVIDIA H100 80GB HBM3')).toBe(4.18);
    expect(priceFor(pricing, 'cuda:NVIDIA A100-SXM4-80GB')).toBe(1.9); // "A100 80GB" is not in this name
    expect(priceFor(pricing, 'cuda:NVIDIA A100 80GB PCIe')).toBe(2.72);
    expect(priceFor(pricing, 'cpu')).toBe(0.5);
    expect(priceFor(pricing, undefined)).toBe(0.5);
    // The configured default is LORAFLOW_GPU_PRICE_PER_HOUR's.
    const config = loadConfig({});
    expect(priceFor({ defaultPerHour: config.LORAFLOW_GPU_PRICE_PER_HOUR, byType: config.LORAFLOW_GPU_PRICES }, 'cuda:NVIDIA H100')).toBe(2.49);
  });

  it('costs GPU milliseconds at an hourly price, shown in cents or fractions of a cent', () => {
    expect(costOf(3_600_000, 4.18)).toBe(4.18);
    expect(costOf(1000, 3.6)).toBe(0.001);
    expect(formatCost(0.001)).toBe('$0.0010');
    expect(formatCost(1.234)).toBe('$1.23');
  });

  it("shows each GPU's price and the run's budget in the report's cost table", () => {
    const usage = {
      jobs: [
        { gpuJobId: 'a', status: 'COMPLETED', executionMs: 60_000, gpu: 'cuda:NVIDIA H100', pricePerHour: 4.18, cost: 0.069667 },
        { gpuJobId: 'b', status: 'FAILED', executionMs: 30_000, gpu: 'cuda:NVIDIA A100', pricePerHour: 1.9, cost: 0.015833 },
      ],
      gpuSeconds: 90,
      queueSeconds: 4,
      unknownJobs: 0,
      pricePerHour: 2.49,
      cost: 0.0855,
    };
    const rows = Object.fromEntries(costRows(usage, 5));
    expect(rows['price per GPU hour']).toBe('cuda:NVIDIA H100: 4.18, cuda:NVIDIA A100: 1.90');
    expect(rows.cost).toBe('$0.09');
    expect(rows.budget).toBe('$5.00');
    expect(rows['not priced']).toMatch(/idle time/); // the cost is a lower bound, and says so
    expect(Object.fromEntries(costRows(usage))).not.toHaveProperty('budget');
  });
});
