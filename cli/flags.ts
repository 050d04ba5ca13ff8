// The CLI's argument parsers (each names what it expected) and the loop `loraflow --help` ends with.
import { InvalidArgumentError } from 'commander';

export const int = (v: string) => {
  if (!/^-?\d+$/.test(v)) throw new InvalidArgumentError('expected an integer');
  return Number(v);
};
export const num = (v: string) => {
  if (Number.isNaN(Number(v))) throw new InvalidArgumentError('expected a number');
  return Number(v);
};
export const priority = (v: string) => {
  if (!/^[1-5]$/.test(v)) throw new InvalidArgumentError('expected 1 (most urgent) to 5');
  return Number(v);
};
export const isoDate = (v: string) => {
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw new InvalidArgumentError('expected an ISO date-time, e.g. 2026-01-01T00:00:00Z');
  return d;
};
export const collect = (v: string, all: string[] = []) => [...all, v];
export const added = (v: string) => {
  if (!/^\+[1-9]\d*$/.test(v)) throw new InvalidArgumentError('expected +N, the number of steps to add (e.g. +200)');
  return Number(v.slice(1));
};

/** The try-and-iterate loop, after the command list of `loraflow --help`. */
export const ITERATE_HELP = `
Try and iterate:
  loraflow train --name s --images ./photos --trigger st --sample-prompt "[trigger], a portrait" --save-every 250 --wait
  loraflow report <id> --out ./report        prompts x steps grid: where it starts to overfit
  loraflow promote s@<version> --step 750    that step becomes the version's LoRA and latest
  loraflow generate s --prompt "st, a lighthouse" --n 4 --out ./gen
  loraflow extend <id> --steps +500          the same training made longer, as a new version
  loraflow train ... --init-from s@latest    a new training from a published LoRA's weights
  loraflow train ... --review-captions       then: captions pull|push <id>, continue <id>`;
