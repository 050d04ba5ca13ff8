// What --init-from and extend refuse before any GPU time: the checks of a parent version (pure).
import { describe, expect, it } from 'vitest';
import { checkCompatible } from '../../activities/init-from.js';
import { TrainingSettings } from '../../contract/pipeline.js';

const training = TrainingSettings.parse({ baseModel: 'tiny-sd', triggerWord: 'lfx', params: { steps: 30, rank: 8 } });
const parent = { baseModel: 'tiny-sd', params: training.params, format: 'diffusers' as 'diffusers' | 'kohya', checkpoint: { sha256: 'c'.repeat(64), bytes: 1, step: 20, uri: 's3://b/k' } };
const check = (meta: Partial<typeof parent>, mode: 'weights' | 'continue' = 'weights') => () => checkCompatible('p@v1', { ...parent, ...meta }, training, mode);

describe('checkCompatible', () => {
  it('takes a parent of the same base model and rank', () => {
    expect(check({})).not.toThrow();
    expect(check({}, 'continue')).not.toThrow();
  });
  it('refuses another base model or rank, naming the flag', () => {
    expect(check({ baseModel: 'tiny-sdxl' })).toThrow('initFrom: p@v1 was trained on base model tiny-sdxl, this run trains tiny-sd (--base-model)');
    expect(check({ params: { ...training.params, rank: 4 } })).toThrow('initFrom: p@v1 has rank 4, this run trains rank 8 (--rank)');
  });
  it('refuses a kohya-layout parent for its weights, but extends it from its checkpoint', () => {
    expect(check({ format: 'kohya' })).toThrow('published in the kohya layout, which cannot be loaded back');
    expect(check({ format: 'kohya' }, 'continue')).not.toThrow();
  });
  it('extend needs a final checkpoint and more steps than it holds', () => {
    expect(check({ checkpoint: undefined }, 'continue')).toThrow('initFrom: p@v1 has no final checkpoint');
    expect(check({ checkpoint: { ...parent.checkpoint, step: 30 } }, 'continue')).toThrow('already trained 30 steps; --steps must add some');
  });
});
