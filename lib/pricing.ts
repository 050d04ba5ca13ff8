// GPU prices: what one GPU hour costs by type, and how costs are shown. Pure functions.

export interface GpuPricing {
  /** LORAFLOW_GPU_PRICE_PER_HOUR: GPUs not in `byType` (and CPU workers). */
  defaultPerHour: number;
  /** LORAFLOW_GPU_PRICES: price per hour by GPU type, matched by name against the reported device. */
  byType: Record<string, number>;
  /** LORAFLOW_GPU_TYPE: the endpoint's GPU type, for jobs that report no device and running jobs. */
  endpointGpu?: string;
}

/** "H100=4.18,A100 80GB=2.72" → { H100: 4.18, "A100 80GB": 2.72 }; a bad entry names itself. */
export function parseGpuPrices(text: string): Record<string, number> {
  const prices: Record<string, number> = {};
  for (const entry of text.split(',').map((e) => e.trim()).filter(Boolean)) {
    const m = /^(.+?)\s*=\s*(\d+(?:\.\d+)?)$/.exec(entry);
    if (!m) throw new Error(`"${entry}": expected GPU=price per hour, e.g. H100=4.18`);
    prices[m[1]!] = Number(m[2]);
  }
  return prices;
}

/** Price per hour of `gpu`: the first table entry whose name it contains (case-insensitive). */
export function priceFor(pricing: GpuPricing, gpu: string | undefined): number {
  const name = gpu?.toLowerCase();
  const hit = name ? Object.entries(pricing.byType).find(([type]) => name.includes(type.toLowerCase())) : undefined;
  return hit?.[1] ?? pricing.defaultPerHour;
}

/** Cost of `ms` of GPU time at `perHour`, rounded to a millionth. */
export const costOf = (ms: number, perHour: number) => round6(((ms / 1000) * perHour) / 3600);

export const round6 = (n: number) => Math.round(n * 1e6) / 1e6;

/** $0.0042 below a cent, $1.23 above. */
export const formatCost = (cost: number) => `$${cost < 0.01 ? cost.toFixed(4) : cost.toFixed(2)}`;
