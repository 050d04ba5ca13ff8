// Training defaults per base model family: which family a name is, and a request built without
// steps/rank/lr gets its family's, while what the user set stays.
import { describe, expect, it } from 'vitest';
import { buildRequest } from '../../cli/train.js';
import { FAMILY_DEFAULTS, familyOf, parseFamilies } from '../../contract/families.js';
import { loadConfig } from '../../lib/config.js';

describe('base model families', () => {
  it('tells the family from the name, or from LORAFLOW_BASE_MODEL_FAMILIES', () => {
    expect(['FLUX.1-dev', 'stable-diffusion-xl-base-1.0', 'tiny-sdxl', 'stable-diffusion-v1-5', 'pixel-art'].map((m) => familyOf(m))).toEqual(['flux', 'sdxl', 'sdxl', 'sd', 'sd']);
    expect(familyOf('juggernaut', parseFamilies('juggernaut=sdxl'))).toBe('sdxl');
    expect(() => parseFamilies('juggernaut=sd3')).toThrow(/"juggernaut=sd3": expected <base model>=<sd\|sdxl\|flux>/);
  });

  it("fills in the family's steps, rank and learning rate, under what the request sets", async () => {
    const build = (baseModel: string, params: Record<string, number | undefined>) =>
      buildRequest({ name: 'fam', images: 'samples/demo', training: { triggerWord: 'lffam', baseModel, params } }, loadConfig({}));
    const flux = await build('FLUX.1-dev', { steps: undefined, rank: 4 });
    expect(flux.training.params).toMatchObject({ steps: FAMILY_DEFAULTS.flux.steps, rank: 4, learningRate: FAMILY_DEFAULTS.flux.learningRate });
    expect((await build('sdxl-base', {})).training.params.steps).toBe(FAMILY_DEFAULTS.sdxl.steps);
    expect(FAMILY_DEFAULTS.flux.steps).not.toBe(FAMILY_DEFAULTS.sd.steps);
  });
});
