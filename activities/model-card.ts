// The Hugging Face model card (README.md) of a published LoRA: Hub front matter and a body that
// says what it is, how it was trained and how to load it. Pure: text in, text out.
import { z } from 'zod';
import { Sha256 } from '../contract/gpu-job.js';
import { LoraName } from '../contract/pipeline.js';

/** The parts of metadata.json (written by publish) the push reads; a bad field is named. */
export const HubMetadata = z.object({
  name: LoraName,
  version: z.string().regex(/^[A-Za-z0-9._-]{1,100}$/),
  triggerWord: z.string().min(1),
  baseModel: z.string().min(1),
  format: z.string().min(1).optional(),
  params: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])),
  lora: z.object({ sha256: Sha256, bytes: z.int().nonnegative() }),
  samples: z.array(z.object({ step: z.int().nonnegative(), prompt: z.int().nonnegative().optional(), sha256: Sha256.optional() })),
  dataset: z.object({ manifestSha256: Sha256, images: z.int().nonnegative() }),
  metrics: z.object({ steps: z.int().nonnegative(), finalLoss: z.number() }).optional(),
  hub: z.object({ allowExistingRepo: z.literal(true) }).optional(),
});
export type HubMetadata = z.infer<typeof HubMetadata>;

export const samplePath = (step: number) => `samples/step-${step}.png`;

/** In every card loraflow writes: a repo whose README.md carries it is one loraflow created and may
 * push into again (replacing README.md and lora.safetensors, deleting stale samples/). */
export const LORAFLOW_MARKER = '<!-- loraflow-managed: created by loraflow, which replaces README.md, lora.safetensors and samples/ on every push -->';

/** YAML scalar: a JSON string is a valid YAML double-quoted string, whatever it contains. */
const yamlString = (s: string) => JSON.stringify(s);
/** Markdown text on one line: characters that could format, link or open HTML are escaped. */
const mdText = (s: string) =>
  s.replace(/\s*\n\s*/g, ' ').replace(/[\\`*_[\]|~<>&]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;' })[c] ?? `\\${c}`);
/** An inline code span that no backtick in `s` can close. */
function mdCode(s: string): string {
  const text = s.replace(/\s*\n\s*/g, ' ');
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((run) => run.length));
  const fence = '`'.repeat(longest + 1);
  return longest ? `${fence} ${text} ${fence}` : `${fence}${text}${fence}`;
}
const cell = (s: string) => s.replace(/\|/g, '\\|');

/**
 * README.md for the Hub: YAML front matter (base_model when the worker's base model name has a
 * Hub id, tags, instance_prompt, library_name, a widget entry per sample image), then the trigger
 * word, base model, training parameters, dataset, the LoRA's sha256 and the samples.
 */
export function modelCard(metadata: HubMetadata, options: { baseModelId?: string; repo?: string } = {}): string {
  const m = metadata;
  const samples = [...m.samples].sort((a, b) => a.step - b.step);
  const front = [
    '---',
    ...(options.baseModelId ? [`base_model: ${yamlString(options.baseModelId)}`] : []),
    'library_name: diffusers',
    `instance_prompt: ${yamlString(m.triggerWord)}`,
    'tags:',
    ...['lora', 'text-to-image', 'diffusers', 'loraflow'].map((t) => `- ${t}`),
    ...(samples.length
      ? ['widget:', ...samples.flatMap((s) => [`- text: ${yamlString(m.triggerWord)}`, '  output:', `    url: ${yamlString(samplePath(s.step))}`])]
      : []),
    '---',
  ];
  const baseModel = options.baseModelId
    ? `${mdCode(m.baseModel)} (${mdCode(options.baseModelId)} on the Hub)`
    : `${mdCode(m.baseModel)} (the GPU worker's name for it; no Hub id configured in LORAFLOW_HF_BASE_MODELS)`;
  const params: [string, string][] = [
    ...Object.entries(m.params).map(([k, v]): [string, string] => [k, v === null ? '—' : String(v)]),
    ...(m.format ? [['format', m.format] as [string, string]] : []),
    ...(m.metrics ? ([['steps trained', String(m.metrics.steps)], ['final loss', m.metrics.finalLoss.toPrecision(4)]] as [string, string][]) : []),
  ];
  const usage =
    m.format === 'kohya'
      ? 'The weights use kohya key names: load `lora.safetensors` in ComfyUI or AUTOMATIC1111.'
      : ['With diffusers, on a pipeline of the base model:', '', '```python', `pipe.load_lora_weights(${JSON.stringify(options.repo ?? '<this repo>')}, weight_name="lora.safetensors")`, '```'].join('\n');
  const body = [
    `# ${mdText(m.name)}`,
    '',
    `A LoRA trained with loraflow, version ${mdCode(m.version)}.`,
    '',
    '## Trigger word',
    '',
    `Use ${mdCode(m.triggerWord)} in the prompt.`,
    '',
    '## Base model',
    '',
    baseModel,
    '',
    '## Training parameters',
    '',
    '| parameter | value |',
    '| --- | --- |',
    ...params.map(([k, v]) => `| ${cell(mdCode(k))} | ${cell(mdCode(v))} |`),
    '',
    '## Dataset',
    '',
    `${m.dataset.images} image${m.dataset.images === 1 ? '' : 's'}; manifest sha256 ${mdCode(m.dataset.manifestSha256)}.`,
    '',
    '## Weights',
    '',
    `\`lora.safetensors\`: ${m.lora.bytes} bytes, sha256 ${mdCode(m.lora.sha256)}.`,
    '',
    usage,
    '',
    '## Samples',
    '',
    ...(samples.length
      ? [`Rendered with the prompt ${mdCode(m.triggerWord)} during training:`, '', ...samples.map((s) => `![step ${s.step}](${samplePath(s.step)})`)]
      : ['No sample images were rendered.']),
    '',
  ];
  return [...front, LORAFLOW_MARKER, '', ...body].join('\n');
}
