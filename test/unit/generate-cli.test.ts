// `loraflow generate`'s argument parsing: NAME[@VERSION][:WEIGHT] and WxH, errors naming the flag.
import { describe, expect, it } from 'vitest';
import { buildGenerateRequest, GENERATE_FLAG, parseLoraRef, parseSize } from '../../cli/generate.js';

describe('generate arguments', () => {
  it('reads a LoRA reference with and without version and weight', () => {
    expect(parseLoraRef('my-style', 'NAME')).toEqual({ name: 'my-style' });
    expect(parseLoraRef('my-style@20261125-093012-1a2b3c4d:0.6', '--lora')).toEqual({ name: 'my-style', version: '20261125-093012-1a2b3c4d', weight: 0.6 });
    expect(() => parseLoraRef('my-style:heavy', '--lora')).toThrow('--lora: the weight after ":" must be a number');
  });

  it('reads a size and names the flag of a bad field', () => {
    expect(parseSize('512x768')).toEqual({ width: 512, height: 768 });
    expect(() => parseSize('512')).toThrow('--size: expected WIDTHxHEIGHT');
    expect(() => buildGenerateRequest({ loras: [{ name: 'a' }, { name: 'b', weight: 9 }], prompts: ['x'] }, GENERATE_FLAG)).toThrow(/^--lora: /);
    expect(() => buildGenerateRequest({ loras: [{ name: 'a' }], prompts: ['x'], width: 33 }, GENERATE_FLAG)).toThrow(/^--size: /);
  });
});
