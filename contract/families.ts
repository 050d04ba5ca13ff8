// Each base-model family's training defaults (steps, rank, learning rate), following the reference
// trainers, and which family a base model is. The worker reads the family from the model itself
// (gpu-worker/families/); the orchestrator needs it earlier, to fill in defaults before the run
// starts (its steps plan segments, estimates and budgets), so it goes by the model's name.
export const FAMILIES = ['sd', 'sdxl', 'flux'] as const;
export type Family = (typeof FAMILIES)[number];

/**
 * What a request leaves out. rank 16 and 1e-4 are ai-toolkit's and sd-scripts' usual LoRA settings
 * for all three (diffusers' examples use 1e-4 with rank 4 on 5-image DreamBooth sets); the steps are
 * enough for a 10–30 image subject LoRA: ai-toolkit's FLUX example trains 2000, SDXL and SD converge
 * sooner at the same rate.
 */
export const FAMILY_DEFAULTS: Record<Family, { steps: number; rank: number; learningRate: number }> = {
  sd: { steps: 1000, rank: 16, learningRate: 1e-4 },
  sdxl: { steps: 1500, rank: 16, learningRate: 1e-4 },
  flux: { steps: 2000, rank: 16, learningRate: 1e-4 },
};

/**
 * The family of a base model: LORAFLOW_BASE_MODEL_FAMILIES names it (`my-model=sdxl,…`), else the
 * name tells (FLUX.1-dev, stable-diffusion-xl-base-1.0, tiny-sdxl), else SD.
 */
export function familyOf(baseModel: string, named: Record<string, Family> = {}): Family {
  if (named[baseModel]) return named[baseModel];
  if (/flux/i.test(baseModel)) return 'flux';
  if (/sdxl|(^|[-_.])xl([-_.]|$)/i.test(baseModel)) return 'sdxl';
  return 'sd';
}

/** `name=family,…` (LORAFLOW_BASE_MODEL_FAMILIES) → a lookup; throws naming the bad entry. */
export function parseFamilies(text: string): Record<string, Family> {
  const out: Record<string, Family> = {};
  for (const entry of text.split(',').map((e) => e.trim()).filter(Boolean)) {
    const [name, family] = entry.split('=').map((s) => s.trim());
    if (!name || !FAMILIES.includes(family as Family)) throw new Error(`"${entry}": expected <base model>=<${FAMILIES.join('|')}>`);
    out[name] = family as Family;
  }
  return out;
}

/** The family's defaults under what the request sets (fields set to undefined count as left out). */
export function withFamilyDefaults<P extends Record<string, unknown>>(params: P, family: Family): P & (typeof FAMILY_DEFAULTS)[Family] {
  const set = Object.fromEntries(Object.entries(params).filter(([, v]) => v !== undefined));
  return { ...FAMILY_DEFAULTS[family], ...set } as P & (typeof FAMILY_DEFAULTS)[Family];
}

/** For --help: "sd 1000, sdxl 1500, flux 2000", or the one value all families share. */
export function describeFamilyDefaults(field: keyof (typeof FAMILY_DEFAULTS)[Family]): string {
  const values = Object.entries(FAMILY_DEFAULTS).map(([family, d]) => [family, d[field]] as const);
  return new Set(values.map(([, v]) => v)).size === 1 ? String(values[0]![1]) : values.map(([f, v]) => `${f} ${v}`).join(', ');
}
