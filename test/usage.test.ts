// Pricing by GPU type and its configuration (the budget itself is tested on the real stack in
// workflow.test.ts).
import { describe, expect, it } from 'vitest';
import { priceFor } from '../activities/usage.js';
import { loadConfig, parseGpuPrices } from '../lib/config.js';

describe('GPU prices', () => {
  it('parses LORAFLOW_GPU_PRICES and names a bad entry', () => {
    expect(parseGpuPrices('H100=4.18, A100 80GB = 2.72,,L40S=1.9')).toEqual({ H100: 4.18, 'A100 80GB': 2.72, L40S: 1.9 });
    expect(parseGpuPrices('')).toEqual({});
    expect(() => loadConfig({ LORAFLOW_GPU_PRICES: 'H100=4.18,A100' })).toThrow(/LORAFLOW_GPU_PRICES.*"A100": expected GPU=price per hour/);
    expect(loadConfig({ LORAFLOW_GPU_PRICES: 'H100=4.18' }).LORAFLOW_GPU_PRICES).toEqual({ H100: 4.18 });
  });

  it('prices a job by the device it reported, the first listed type it contains, else the default', () => {
    const deps = { gpuPricePerHour: 0.5, gpuPrices: { 'A100 80GB': 2.72, A100: 1.9, H100: 4.18 } };
    expect(priceFor(deps, 'cuda:NVIDIA H100 80GB HBM3')).toBe(4.18);
    expect(priceFor(deps, 'cuda:NVIDIA A100-SXM4-80GB')).toBe(1.9); // "A100 80GB" is not in this name
    expect(priceFor(deps, 'cuda:NVIDIA A100 80GB PCIe')).toBe(2.72);
    expect(priceFor(deps, 'cpu')).toBe(0.5);
    expect(priceFor(deps, undefined)).toBe(0.5);
    expect(priceFor({}, 'cuda:NVIDIA H100')).toBe(2.49);
  });
});
