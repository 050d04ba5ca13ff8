// Pure parts of picking the best step: sample prompts, which steps are kept, the loss chart.
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { stepsToSave } from '../../activities/train.js';
import { chartMarks, curveSteps, lossSvg, smooth } from '../../activities/report.js';
import { expandPrompts } from '../../lib/prompts.js';

describe('sample prompts', () => {
  it('expands [trigger] and defaults to the trigger word', () => {
    expect(expandPrompts(['[trigger], a red car', 'photo of [trigger] and [trigger]'], 'lfx')).toEqual(['lfx, a red car', 'photo of lfx and lfx']);
    expect(expandPrompts(undefined, 'lfx')).toEqual(['lfx']);
  });
  it('refuses a prompt given twice, naming it', () => {
    expect(() => expandPrompts(['lfx dog', '[trigger] dog'], 'lfx')).toThrow('samplePrompts.1: "lfx dog" is the same prompt as samplePrompts.0');
  });
});

it('keeps every N steps before the last (the last is the LoRA itself)', () => {
  expect(stepsToSave(10, 4)).toEqual([4, 8]);
  expect(stepsToSave(8, 4)).toEqual([4]);
  expect(stepsToSave(8, 0)).toEqual([]);
});

describe('loss chart', () => {
  it('smooths without pulling the start to zero', () => {
    expect(smooth([2, 2, 2])).toEqual([2, 2, 2].map((v) => expect.closeTo(v, 9)));
    const noisy = smooth([1, 3, 1, 3, 1, 3]);
    expect(noisy[0]).toBeCloseTo(1);
    expect(Math.max(...noisy.slice(2)) - Math.min(...noisy.slice(2))).toBeLessThan(1);
  });
  it("places downsampled points at their steps", () => {
    expect(curveSteps(3, 3)).toEqual([1, 2, 3]);
    expect(curveSteps(3, 101)).toEqual([1, 51, 101]);
  });
  it('marks segment ends and lost workers, and labels both axes', async () => {
    expect(chartMarks([{ step: 5, kind: 'segment-end' }, { step: 8, kind: 'resumed-after-loss' }]).map((m) => m.label)).toEqual(['segment end 5', 'worker lost, resumed 8']);
    const svg = lossSvg([0.5, 0.4, 0.45, 0.3], { steps: 4, events: [{ step: 2, kind: 'segment-end' }] });
    expect(svg).toContain('>step</text>');
    expect(svg).toContain('>loss</text>');
    expect(svg).toContain('segment end 2');
    expect(svg.match(/<polyline/g)).toHaveLength(2); // raw and smoothed
    expect(await sharp(Buffer.from(svg)).metadata()).toMatchObject({ width: 640, height: 320 }); // well-formed SVG
  });
});
