// Seed 004's ai-toolkit YAML as the gateway reads it: the keys loraflow has a setting for are
// mapped, every other key is named back, and a bad value names its key.
import { describe, expect, it } from 'vitest';
import { fromAiToolkitYaml } from '../../api/gateway/ai-toolkit.js';

const YAML = `job: extension
config:
  name: my_lora
  process:
    - type: sd_trainer
      trigger_word: p3r5on
      network: {type: lora, linear: 16, linear_alpha: 8}
      datasets:
        - folder_path: /workspace/training_data/matt/
          caption_ext: txt
          caption_dropout_rate: 0.05
          resolution: [512, 768, 1024]
      train: {batch_size: 2, steps: 1500, lr: 4e-4, seed: 7, optimizer: adamw8bit, gradient_checkpointing: true}
      model: {name_or_path: black-forest-labs/FLUX.1-dev, quantize: true}
      sample: {sample_every: 250, prompts: ["a photo of p3r5on"]}
meta: {name: "[name]", version: '1.0'}
`;

describe('ai-toolkit YAML', () => {
  it('maps the supported keys and names every ignored one', () => {
    expect(fromAiToolkitYaml(YAML)).toEqual({
      name: 'my_lora',
      trainingName: 'matt',
      triggerWord: 'p3r5on',
      params: { steps: 1500, rank: 16, alpha: 8, learningRate: 4e-4, batchSize: 2, seed: 7, resolution: 1024 },
      ignored: [
        'job',
        'meta.name',
        'meta.version',
        'config.process.0.datasets.0.caption_dropout_rate',
        'config.process.0.train.optimizer',
        'config.process.0.train.gradient_checkpointing',
        'config.process.0.model.name_or_path',
        'config.process.0.model.quantize',
        'config.process.0.sample.sample_every',
        'config.process.0.sample.prompts',
      ],
    });
  });

  it('names the key of a bad value, and refuses what is not a LoRA training', () => {
    expect(() => fromAiToolkitYaml(YAML.replace('steps: 1500', 'steps: many'))).toThrow(/^config\.process\.0\.train\.steps: expected a number, got "many"$/);
    expect(() => fromAiToolkitYaml(YAML.replace('type: lora', 'type: lokr'))).toThrow(/network\.type: only "lora"/);
    expect(() => fromAiToolkitYaml('config: {process: []}')).toThrow(/^config\.name: missing/);
    expect(() => fromAiToolkitYaml('config: {name: x}')).toThrow(/^config\.process:/);
    expect(() => fromAiToolkitYaml('config: [unclosed')).toThrow(/^not valid YAML/);
  });
});
