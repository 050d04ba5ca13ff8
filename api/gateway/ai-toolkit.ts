// Seed 004 trains with ai-toolkit's LoRA YAML. The keys loraflow has a setting for are mapped onto
// its request; every other key is named back to the client as ignored, never silently dropped.
import { parse as parseYaml } from 'yaml';

export interface AiToolkitTraining {
  name: string;
  /** The folder the data was uploaded as (upload_training_data's training_name). */
  trainingName?: string;
  triggerWord?: string;
  params: { steps?: number; rank?: number; alpha?: number; learningRate?: number; batchSize?: number; resolution?: number; seed?: number };
  ignored: string[];
}

/** process[0]'s keys loraflow reads (dotted, under `config.process.0.`). */
const SUPPORTED = new Set([
  'type', 'trigger_word', 'network.type', 'network.linear', 'network.linear_alpha', 'train.steps', 'train.lr', 'train.batch_size', 'train.seed', 'datasets.0.folder_path', 'datasets.0.resolution', 'datasets.0.caption_ext',
]);

/** Every leaf of `value` as a dotted path. */
function leaves(value: unknown, at: string): string[] {
  if (Array.isArray(value)) return value.every((v) => typeof v !== 'object' || v === null) ? [at] : value.flatMap((v, i) => leaves(v, `${at}.${i}`));
  if (value && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => leaves(v, at ? `${at}.${k}` : k));
  return [at];
}

const num = (v: unknown, key: string): number | undefined => {
  if (v === undefined) return undefined;
  const n = typeof v === 'string' ? Number(v) : v; // YAML reads 1e-4 as a string
  if (typeof n !== 'number' || Number.isNaN(n)) throw new Error(`${key}: expected a number, got ${JSON.stringify(v)}`);
  return n;
};

export function fromAiToolkitYaml(text: string): AiToolkitTraining {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new Error(`not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  const config = (doc as { config?: { name?: unknown; process?: unknown[] } } | null)?.config;
  if (!config || typeof config !== 'object') throw new Error('config: missing (ai-toolkit YAML has `config: {name, process: [...]}`)');
  if (typeof config.name !== 'string' || !config.name) throw new Error('config.name: missing');
  const processes = Array.isArray(config.process) ? config.process : [];
  const p = (processes[0] ?? {}) as Record<string, any>;
  if (!processes.length) throw new Error('config.process: expected one training process');
  if (p.network?.type !== undefined && p.network.type !== 'lora') throw new Error(`config.process.0.network.type: only "lora" is trained here, got ${JSON.stringify(p.network.type)}`);
  const res = p.datasets?.[0]?.resolution;
  const folder = p.datasets?.[0]?.folder_path;
  const ignored = [
    ...leaves(doc, '').filter((k) => !k.startsWith('config.process.') && k !== 'config.name'),
    ...processes.slice(1).map((_, i) => `config.process.${i + 1}`),
    ...leaves(p, '').filter((k) => !SUPPORTED.has(k)).map((k) => `config.process.0.${k}`),
  ];
  const at = (k: string) => `config.process.0.${k}`;
  return {
    name: config.name,
    ...(typeof folder === 'string' ? { trainingName: folder.replace(/\/+$/, '').split('/').at(-1)! } : {}),
    ...(typeof p.trigger_word === 'string' ? { triggerWord: p.trigger_word } : {}),
    params: Object.fromEntries(
      Object.entries({
        steps: num(p.train?.steps, at('train.steps')),
        rank: num(p.network?.linear, at('network.linear')),
        alpha: num(p.network?.linear_alpha, at('network.linear_alpha')),
        learningRate: num(p.train?.lr, at('train.lr')),
        batchSize: num(p.train?.batch_size, at('train.batch_size')),
        seed: num(p.train?.seed, at('train.seed')),
        // ai-toolkit buckets several sizes; loraflow trains at one: the largest asked for.
        resolution: num(Array.isArray(res) ? Math.max(...res.map(Number)) : res, at('datasets.0.resolution')),
      }).filter(([, v]) => v !== undefined),
    ),
    ignored,
  };
}
