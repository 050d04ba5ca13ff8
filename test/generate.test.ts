// `loraflow generate` end to end on the embedded stack (the real GPU worker on the tiny model): two
// tiny LoRAs are trained once (a few steps, a high learning rate so they show in 8-bit pixels), then
// every generate check runs against them.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GenerationResult } from '../contract/pipeline.js';
import { sha256 } from '../lib/hash.js';
import { listKeys, makeStorage } from '../lib/s3.js';
import { type Stack, startStack } from '../stack/index.js';
import { makeDataset } from '../testkit/datasets.js';
import { stackEnv, tempDir } from '../testkit/services.js';
import { until } from '../testkit/wait.js';
import { cliRunner } from '../testkit/cli.js';

let tmp: ReturnType<typeof tempDir>;
let stack: Stack;

const loraflow = cliRunner(() => stack.env);

beforeAll(async () => {
  tmp = tempDir('generate');
  stack = await startStack({ env: { ...(await stackEnv(tmp.dir)), LORAFLOW_POLL_MS: '300' } });
  const dataset = await makeDataset(path.join(tmp.dir, 'dataset'), { images: 3, captioned: 3, size: 48 });
  for (const [name, seed] of [['gen-a', '1'], ['gen-b', '2']] as const) {
    const trained = await loraflow('train', '--name', name, '--images', dataset, '--trigger', 'lfgen', '--steps', '4', '--lr', '0.05', '--seed', seed, '--wait', '--json');
    expect(trained.code, trained.stderr).toBe(0);
  }
}, 600_000);

afterAll(async () => {
  await stack?.stop();
  if (!process.env.KEEP_TMP) tmp?.remove();
});

/** One generation with the same prompts, seed and steps; `--out` downloads it. */
async function generate(lora: string, ...extra: string[]): Promise<GenerationResult & { files: string[] }> {
  const out = path.join(tmp.dir, `out-${Math.random().toString(16).slice(2)}`);
  const res = await loraflow('generate', lora, '--prompt', 'lfgen', '--prompt', 'lfgen, a red square', '--n', '2', '--seed', '3', '--steps', '4', '--out', out, '--json', ...extra);
  expect(res.code, res.stderr).toBe(0);
  const { result, files } = JSON.parse(res.stdout) as { result: GenerationResult; files: string[] };
  return { ...result, files };
}
const shas = (g: GenerationResult) => g.images.map((i) => i.sha256);
/** gen-a's image of prompt "lfgen" at seed 3, as the CLI rendered it. */
let cliImage: string | undefined;

const api = (route: string, init: RequestInit = {}) =>
  fetch(`${stack.api.url}${route}`, { ...init, headers: { authorization: `Bearer ${stack.api.token}`, 'content-type': 'application/json' } });

describe('loraflow generate', () => {
  it('renders with one and with two LoRAs: each changes the base model\'s images, and the same seed gives the same PNGs', async () => {
    const one = await generate('gen-a');
    cliImage = one.images.find((i) => i.prompt === 0 && i.seed === 3)?.sha256;
    const again = await generate('gen-a');
    const base = await generate('gen-a:0'); // weight 0: the worker applies nothing
    const two = await generate('gen-a', '--lora', 'gen-b:0.8');
    expect(new Set(shas(one)).size).toBe(4);
    expect(shas(again)).toEqual(shas(one));
    expect(shas(one)).not.toEqual(shas(base));
    expect(shas(two)).not.toEqual(shas(one));
    expect(two.loras.map((l) => [l.name, l.weight])).toEqual([['gen-a', 1], ['gen-b', 0.8]]);

    // Stored under gen-a's version; downloaded files are what the worker reported.
    expect(one.uri).toMatch(new RegExp(`^s3://loraflow/loras/gen-a/${one.loras[0]!.version}/generations/gen-gen-a-[0-9a-f]{8}/$`));
    const stored = await listKeys(makeStorage(stack.config), one.uri.replace(/^s3:\/\/[^/]+\//, ''));
    expect(stored.map((k) => path.basename(k)).sort()).toEqual(['contact-sheet.png', 'generation.json', 'prompt0-seed3.png', 'prompt0-seed4.png', 'prompt1-seed3.png', 'prompt1-seed4.png']);
    const file = one.files.find((f) => f.endsWith('prompt1-seed4.png'))!;
    expect(sha256(await readFile(file))).toBe(one.images.find((i) => i.prompt === 1 && i.seed === 4)!.sha256);
    expect(one.usage.jobs).toHaveLength(1);
  }, 600_000);

  it('over HTTP: POST /v1/generations, then GET it for presigned URLs of the same PNG the CLI got', async () => {
    const bad = await api('/v1/generations', { method: 'POST', body: JSON.stringify({ loras: [{ name: 'gen-a' }], prompts: ['lfgen'], n: 0 }) });
    expect([bad.status, ((await bad.json()) as { error: { field: string } }).error.field]).toEqual([400, 'n']);
    const created = await api('/v1/generations', { method: 'POST', body: JSON.stringify({ loras: [{ name: 'gen-a' }], prompts: ['lfgen'], n: 1, seed: 3, steps: 4 }) });
    expect(created.status).toBe(201);
    const { id } = (await created.json()) as { id: string };
    type Got = { status: string; result?: GenerationResult; files?: { name: string; url: string }[] };
    const got = await until(async () => (await (await api(`/v1/generations/${id}`)).json()) as Got, (g) => g.status !== 'RUNNING', 300_000, 1000);
    expect(got.status).toBe('COMPLETED');
    const png = Buffer.from(await (await fetch(got.files!.find((f) => f.name === 'prompt0-seed3.png')!.url)).arrayBuffer());
    expect(sha256(png)).toBe(got.result!.images[0]!.sha256);
    expect(sha256(png)).toBe(cliImage);
  }, 360_000);

  it('a cancelled generation stops its GPU job', async () => {
    const since = stack.runpod.ledger().length;
    const started = await loraflow('generate', 'gen-a', '--prompt', 'lfgen', '--n', '16', '--steps', '100', '--json');
    expect(started.code, started.stderr).toBe(0);
    const { workflowId } = JSON.parse(started.stdout) as { workflowId: string };
    const job = await until(() => stack.runpod.ledger().slice(since).find((e) => e.task === 'generate' && e.status === 'IN_PROGRESS' && e.progressUpdates >= 2), Boolean, 180_000, 100);
    const cancelled = await loraflow('cancel', workflowId, '--json');
    expect(JSON.parse(cancelled.stdout)).toMatchObject({ status: 'CANCELLED' });
    expect(stack.runpod.ledger().find((e) => e.id === job!.id)?.status).toBe('CANCELLED');
  }, 300_000);

  it('names the flag that is wrong', async () => {
    const res = await loraflow('generate', 'gen-a', '--prompt', 'x', '--lora', 'gen-b:heavy');
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('--lora: the weight after ":" must be a number');
    const missing = await loraflow('generate', 'no-such-lora', '--prompt', 'x', '--wait');
    expect(missing.stderr).toContain('loras.0: no published LoRA named no-such-lora');
  }, 120_000);
});
