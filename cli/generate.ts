// `loraflow generate`: parse NAME[@VERSION][:WEIGHT] and the flags into a GenerateRequest, start
// its workflow (every call is a new generation: seeds, not ids, make it reproducible), and
// download what it stored.
import { randomUUID } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { GenerateRequest, type GenerateRequestInput, type GenerationResult } from '../contract/pipeline.js';
import type { Config } from '../lib/config.js';
import { sha256 } from '../lib/hash.js';
import { keyOfUri } from '../lib/keys.js';
import { getBytes, makeStorage } from '../lib/s3.js';
import { CliError } from './connect.js';

/** `name`, `name@version`, either with `:weight` (e.g. `my-style@20261125-093012-1a2b3c4d:0.6`). */
export function parseLoraRef(text: string, flag: string): GenerateRequestInput['loras'][number] {
  const m = /^([^@:]+)(?:@([^:]+))?(?::(.+))?$/.exec(text);
  if (!m) throw new CliError(`${flag}: expected NAME[@VERSION][:WEIGHT], got ${JSON.stringify(text)}`);
  const weight = m[3] === undefined ? undefined : Number(m[3]);
  if (weight !== undefined && !Number.isFinite(weight)) throw new CliError(`${flag}: the weight after ":" must be a number, got ${JSON.stringify(m[3])}`);
  return { name: m[1]!, ...(m[2] ? { version: m[2] } : {}), ...(weight !== undefined ? { weight } : {}) };
}

/** `512x768` → width and height. */
export function parseSize(text: string): { width: number; height: number } {
  const m = /^(\d+)x(\d+)$/i.exec(text);
  if (!m) throw new CliError(`--size: expected WIDTHxHEIGHT, e.g. 512x768, got ${JSON.stringify(text)}`);
  return { width: Number(m[1]), height: Number(m[2]) };
}

/** The request, or an error naming the field as `fieldName` spells it (a flag, or a JSON field in the HTTP API). */
export function buildGenerateRequest(input: GenerateRequestInput, fieldName: (field: string) => string = (f) => f): GenerateRequest {
  const parsed = GenerateRequest.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new CliError(`${fieldName(issue.path.join('.'))}: ${issue.message}`);
  }
  return parsed.data;
}

/** CLI flag for each request field (NAME: the first LoRA, the command's argument). */
export const GENERATE_FLAG = (field: string): string => {
  if (field === 'loras.0' || field.startsWith('loras.0.')) return 'NAME';
  if (field.startsWith('loras.')) return '--lora';
  const flags: Record<string, string> = { prompts: '--prompt', negativePrompt: '--negative', n: '--n', seed: '--seed', steps: '--steps', guidance: '--guidance', width: '--size', height: '--size', budget: '--budget' };
  return flags[field.replace(/\.\d+$/, '')] ?? field;
};

export async function startGeneration(client: Client, config: Config, request: GenerateRequest, workflowId?: string): Promise<WorkflowHandle> {
  return client.workflow.start('generateImages', {
    taskQueue: config.LORAFLOW_TASK_QUEUE,
    workflowId: workflowId ?? `gen-${request.loras[0]!.name}-${randomUUID().slice(0, 8)}`,
    args: [request],
    // An id the caller chose (the API's Idempotency-Key) always means that one generation.
    ...(workflowId ? { workflowIdReusePolicy: 'REJECT_DUPLICATE' as const } : {}),
  });
}

/** Writes every image, the contact sheet and generation.json into `out`, each checked against its sha256. */
export async function downloadGeneration(config: Config, result: GenerationResult, out: string): Promise<string[]> {
  const storage = makeStorage(config);
  await mkdir(out, { recursive: true });
  const written = [];
  for (const file of [...result.images, result.contactSheet]) {
    const bytes = await getBytes(storage, keyOfUri(file.uri));
    if (sha256(bytes) !== file.sha256) throw new CliError(`${file.uri} does not match its sha256; not writing it`);
    written.push(await writeFileAtomically(path.join(out, path.basename(file.uri)), bytes));
  }
  written.push(await writeFileAtomically(path.join(out, 'generation.json'), JSON.stringify(result, null, 2)));
  return written;
}

/** Beside, then renamed: never a half-written file under the final name. */
async function writeFileAtomically(file: string, bytes: Uint8Array | string): Promise<string> {
  await writeFile(`${file}.partial`, bytes);
  await rename(`${file}.partial`, file);
  return file;
}
