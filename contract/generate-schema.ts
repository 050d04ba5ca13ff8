// Writes the JSON Schemas the Python worker validates against (`npm run contract`).
// With --check it only compares, so CI fails when the committed files drift from the zod source.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { CaptionJobOutput, GenerateJobOutput, GpuJobInput, GpuProgress, TrainJobOutput } from './gpu-job.js';

const schemas = {
  'gpu-job-input': GpuJobInput,
  'caption-job-output': CaptionJobOutput,
  'train-job-output': TrainJobOutput,
  'generate-job-output': GenerateJobOutput,
  'gpu-progress': GpuProgress,
};

export function renderSchemas(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(schemas).map(([name, schema]) => [
      `${name}.schema.json`,
      // io: 'output' — the orchestrator sends parsed values, so defaulted fields are always present.
      JSON.stringify(z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'output' }), null, 2) + '\n',
    ]),
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const check = process.argv.includes('--check');
  const dir = new URL('./schema/', import.meta.url);
  let stale = 0;
  for (const [file, text] of Object.entries(renderSchemas())) {
    const path = new URL(file, dir);
    if (!check) writeFileSync(path, text);
    else if (readFileSync(path, 'utf8') !== text) {
      console.error(`contract/schema/${file} is stale: run npm run contract`);
      stale++;
    }
  }
  process.exit(stale ? 1 : 0);
}
