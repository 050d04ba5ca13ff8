// The Hugging Face model card: front matter the Hub reads, and a body that odd characters in names,
// trigger words or parameters cannot break.
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { type HubMetadata, modelCard } from '../../activities/model-card.js';

const meta: HubMetadata = {
  name: 'my-style',
  version: '20261125-093012-1a2b3c4d',
  triggerWord: 'mystyle',
  baseModel: 'tiny-sd',
  format: 'diffusers',
  params: { steps: 500, rank: 8, learningRate: 0.0001, batchSize: 1, seed: 42, lrScheduler: 'constant', gradientCheckpointing: false },
  lora: { sha256: 'a'.repeat(64), bytes: 1234 },
  samples: [{ step: 500, sha256: 'b'.repeat(64) }, { step: 250, sha256: 'c'.repeat(64) }],
  dataset: { manifestSha256: 'd'.repeat(64), images: 12 },
  metrics: { steps: 500, finalLoss: 0.0456 },
};

function splitCard(card: string) {
  const m = /^---\n([\s\S]*?)\n---\n([\s\S]*)$/.exec(card);
  expect(m).not.toBeNull();
  return { front: parseYaml(m![1]!) as Record<string, unknown>, body: m![2]! };
}

describe('modelCard', () => {
  it('has the Hub front matter and a body with trigger word, base model, every parameter, hashes and samples', () => {
    const card = modelCard(meta, { baseModelId: 'org/base-model', repo: 'test-org/my-style' });
    const { front, body } = splitCard(card);
    expect(front).toEqual({
      base_model: 'org/base-model',
      library_name: 'diffusers',
      instance_prompt: 'mystyle',
      tags: ['lora', 'text-to-image', 'diffusers', 'loraflow'],
      widget: [
        { text: 'mystyle', output: { url: 'samples/step-250.png' } },
        { text: 'mystyle', output: { url: 'samples/step-500.png' } },
      ],
    });
    expect(body).toContain('# my-style');
    expect(body).toContain('Use `mystyle` in the prompt.');
    expect(body).toContain('`tiny-sd` (`org/base-model` on the Hub)');
    for (const [k, v] of Object.entries(meta.params)) expect(body).toContain(`| \`${k}\` | \`${String(v)}\` |`);
    expect(body).toContain('| `final loss` | `0.04560` |');
    expect(body).toContain(`12 images; manifest sha256 \`${'d'.repeat(64)}\``);
    expect(body).toContain(`1234 bytes, sha256 \`${'a'.repeat(64)}\``);
    expect(body).toContain('![step 250](samples/step-250.png)');
    expect(body).toContain('![step 500](samples/step-500.png)');
    expect(body).toContain('pipe.load_lora_weights("test-org/my-style", weight_name="lora.safetensors")');
  });

  it('keeps odd characters from breaking the YAML, the headings or the tables', () => {
    const odd: HubMetadata = {
      ...meta,
      name: 'odd | name <script>alert(1)</script> *bold* `tick`\nnext: line',
      triggerWord: 'trig: "quoted" # not a comment',
      baseModel: 'base|model',
      params: { 'weird|key': 'a`b|c' },
      samples: [],
    };
    const { front, body } = splitCard(modelCard(odd));
    expect(front).toEqual({ library_name: 'diffusers', instance_prompt: odd.triggerWord, tags: ['lora', 'text-to-image', 'diffusers', 'loraflow'] });
    const heading = body.split('\n').find((l) => l.startsWith('# '))!;
    expect(heading).toBe('# odd \\| name &lt;script&gt;alert(1)&lt;/script&gt; \\*bold\\* \\`tick\\` next: line');
    expect(body).not.toContain('<script>');
    expect(body).toContain('| `weird\\|key` | `` a`b\\|c `` |');
    expect(body).toContain('No sample images were rendered.');
    expect(body).toContain('no Hub id configured in LORAFLOW_HF_BASE_MODELS');
  });
});

