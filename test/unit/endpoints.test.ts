// Endpoint choice and the cost estimate (lib/endpoints.ts): pure functions.
import { describe, expect, it } from 'vitest';
import { eligibleEndpoints, estimateOn, memoryNeededGb, overBudget, parseEndpoints, type SpeedSample } from '../../lib/endpoints.js';

const pricing = { defaultPerHour: 2, byType: { H100: 4 } };
const sdxl = (over: Partial<{ rank: number; batchSize: number; resolution: number; gradientCheckpointing: boolean; steps: number }> = {}) => ({
  baseModel: 'sdxl',
  params: { rank: 8, batchSize: 1, steps: 1000, ...over },
});

describe('endpoints', () => {
  it('parses endpoints in order, with an optional price, and names a bad entry', () => {
    expect(parseEndpoints('a:RTX 4090:24:0.69, b:H100 80GB:80')).toEqual([
      { id: 'a', gpu: 'RTX 4090', memoryGb: 24, pricePerHour: 0.69 },
      { id: 'b', gpu: 'H100 80GB', memoryGb: 80 },
    ]);
    expect(() => parseEndpoints('a:A100')).toThrow(/"a:A100": expected endpoint-id:GPU type:memory GB/);
    expect(() => parseEndpoints('a:A:8,a:B:9')).toThrow(/listed twice/);
  });

  it("needs the README's memory per family, more without checkpointing and at a larger batch", () => {
    expect(memoryNeededGb({ baseModel: 'sd15', params: { rank: 8, batchSize: 1, steps: 1 } })).toBe(5.8);
    expect(memoryNeededGb(sdxl())).toBe(8.3);
    expect(memoryNeededGb({ baseModel: 'flux-dev', params: { rank: 8, batchSize: 1, steps: 1 } })).toBe(28);
    expect(memoryNeededGb(sdxl({ gradientCheckpointing: false }))).toBe(13.8);
    expect(memoryNeededGb(sdxl({ batchSize: 4 }))).toBe(12.8);
    expect(memoryNeededGb({ baseModel: 'my-own-model', params: { rank: 8, batchSize: 1, steps: 1 } })).toBeUndefined();
  });

  it('keeps the order, skips endpoints too small or of another GPU type, and says why', () => {
    const endpoints = parseEndpoints('small:RTX 4000:16,big:A100 80GB:80,other:H100:80');
    const flux = { baseModel: 'flux-dev', params: { rank: 8, batchSize: 1, steps: 1 } };
    const choice = eligibleEndpoints(endpoints, memoryNeededGb(flux));
    expect(choice.eligible.map((e) => e.id)).toEqual(['big', 'other']);
    expect(choice.skipped).toEqual([{ id: 'small', reason: '16 GB is less than the 28 GB the run needs' }]);
    expect(eligibleEndpoints(endpoints, 8, 'h100').eligible.map((e) => e.id)).toEqual(['other']);
  });

  it('estimates from runs measured on the same GPU, else elsewhere, else the stated default', () => {
    const [a100, h100] = parseEndpoints('a:A100 80GB:80:3.6,h:H100:80');
    const samples: SpeedSample[] = [
      { baseModel: 'sdxl', batchSize: 1, gpu: 'cuda:NVIDIA A100 80GB PCIe', secondsPerStep: 0.5, setupSeconds: 100 },
      { baseModel: 'sdxl', batchSize: 1, gpu: 'cuda:NVIDIA A100 80GB PCIe', secondsPerStep: 0.7, setupSeconds: 140 },
      { baseModel: 'sdxl', batchSize: 2, gpu: 'cuda:NVIDIA A100 80GB PCIe', secondsPerStep: 9, setupSeconds: 900 },
    ];
    expect(estimateOn(sdxl(), a100!, pricing, samples, 1)).toMatchObject({ endpointId: 'a', gpuSeconds: 600, cost: 0.6, pricePerHour: 3.6, source: 'measured', samples: 2, withinBudget: true });
    expect(estimateOn(sdxl(), h100!, pricing, samples)).toMatchObject({ gpuSeconds: 600, pricePerHour: 4, source: 'measured-elsewhere' });
    expect(estimateOn(sdxl(), h100!, pricing, [])).toMatchObject({ gpuSeconds: 950, source: 'default', samples: 0 });
  });

  it('refuses a run whose first endpoint estimate is over its budget, with both figures', () => {
    const [a] = parseEndpoints('a:A100:80:3.6');
    const estimate = estimateOn(sdxl(), a!, pricing, []);
    expect(overBudget([estimate], 0.5)).toBe("the run's estimated GPU cost is $0.95 (950 GPU s on a), over its budget of $0.50");
    expect(overBudget([estimate], 1)).toBeUndefined();
    expect(overBudget([estimate], undefined)).toBeUndefined();
  });
});
