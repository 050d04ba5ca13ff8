// Try and iterate, end to end through the `loraflow` CLI on the embedded stack (real Temporal,
// versitygw, the local RunPod endpoint running the real GPU worker on the tiny models): one parent
// LoRA, then a training started from its weights, a refused mismatch, an extension of it, and a
// caption review whose edit the next LoRA is trained on.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAMILY_DEFAULTS } from '../contract/families.js';
import type { Captions, DatasetManifest, LoraMetadata, PipelineProgress, PublishedLora } from '../contract/pipeline.js';
import { sha256 } from '../lib/hash.js';
import { keyOfUri, manifestKey } from '../lib/keys.js';
import { getBytes, getJson, makeStorage } from '../lib/s3.js';
import { type Stack, startStack } from '../stack/index.js';
import { makeDataset } from '../testkit/datasets.js';
import { stackEnv, tempDir } from '../testkit/services.js';
import { until } from '../testkit/wait.js';
import { cliRunner } from '../testkit/cli.js';

let tmp: ReturnType<typeof tempDir>;
let stack: Stack;
let dataset: string;

beforeAll(async () => {
  tmp = tempDir('iterate');
  stack = await startStack({ env: { ...(await stackEnv(tmp.dir)), LORAFLOW_POLL_MS: '500' } });
  dataset = await makeDataset(path.join(tmp.dir, 'dataset'), { images: 3, captioned: 3, size: 48 });
});

afterAll(async () => {
  await stack?.stop();
  if (!process.env.KEEP_TMP) tmp?.remove();
});

const loraflow = cliRunner(() => stack.env, 420_000);

/** Runs a CLI command that must succeed; its --json output. */
async function ok<T>(...args: string[]): Promise<T> {
  const res = await loraflow(...args, '--json');
  expect(res.code, res.stderr).toBe(0);
  return JSON.parse(res.stdout) as T;
}

type Started = { workflowId: string; published: PublishedLora };
const metadataOf = (published: PublishedLora) => getJson<LoraMetadata>(makeStorage(stack.config), keyOfUri(published.metadataUri));
const trainJobsSince = (since: number) => stack.runpod.ledger().slice(since).filter((e) => e.task === 'train');
const train = (name: string, steps: number, ...extra: string[]) => ['train', '--name', name, '--images', dataset, '--trigger', 'lfiter', '--steps', String(steps), '--lr', '0.03', ...extra];

describe('try and iterate', () => {
  let parent: Started;
  let parentMeta: LoraMetadata;
  beforeAll(async () => {
    parent = await ok<Started>(...train('iter', 20), '--wait');
    parentMeta = await metadataOf(parent.published);
  }, 480_000); // the stack's first pipeline: its GPU worker starts cold

  it('--init-from starts from the published weights; a mismatched rank is refused before any GPU time', async () => {
    const since = stack.runpod.ledger().length;
    const refused = await loraflow(...train('iter-child', 3, '--init-from', `iter@${parent.published.version}`, '--rank', '4', '--wait'));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`initFrom: iter@${parent.published.version} has rank ${FAMILY_DEFAULTS.sd.rank}, this run trains rank 4 (--rank)`);
    expect(trainJobsSince(since)).toEqual([]);

    const child = await ok<Started>(...train('iter-child', 3, '--init-from', 'iter@latest', '--wait'));
    const meta = await metadataOf(child.published);
    expect(meta.initFrom).toEqual({ name: 'iter', version: parent.published.version, mode: 'weights', sha256: parent.published.sha256 });
    // Same seed and images, so the child's first step draws what the parent's first (fresh) step drew:
    // only the weights differ, and they are the trained ones.
    const [freshFirst, parentLast, childFirst] = [parentMeta.metrics.lossCurve[0]!, parentMeta.metrics.finalLoss, meta.metrics.lossCurve[0]!];
    expect(Math.abs(childFirst - parentLast), `child ${childFirst}, parent last ${parentLast}, fresh ${freshFirst}`).toBeLessThan(Math.abs(childFirst - freshFirst));
  }, 300_000);

  it('extend continues the run from its final checkpoint into a new version, paying only for the added steps', async () => {
    const since = stack.runpod.ledger().length;
    const extended = await ok<Started>('extend', parent.workflowId, '--steps', '+4', '--wait');
    const meta = await metadataOf(extended.published);
    expect(extended.published.version).not.toBe(parent.published.version);
    expect(meta).toMatchObject({ name: 'iter', initFrom: { name: 'iter', version: parent.published.version, mode: 'continue' }, params: { steps: 24 }, checkpoint: { step: 24 } });
    expect(meta.metrics.stepsPaid).toBe(4);
    expect(meta.metrics.lossCurve.slice(0, 20)).toEqual(parentMeta.metrics.lossCurve); // the parent's 20 steps, not redone
    expect(meta.dataset.manifestSha256).toBe(parentMeta.dataset.manifestSha256);
    expect(stack.runpod.ledger().slice(since).map((e) => e.task)).toEqual(['train']); // no ingest GPU work, no caption job
  }, 300_000);

  it('a caption review: pull, edit one caption, push, continue; the LoRA is trained on the edit', async () => {
    const images = await makeDataset(path.join(tmp.dir, 'review'), { images: 3, captioned: 2, size: 48 });
    const args = ['train', '--name', 'iter-review', '--images', images, '--trigger', 'lfrev', '--steps', '2', '--review-captions'];
    const started = await ok<{ workflowId: string }>(...args, '--captioner', 'tiny-captioner', '--caption-prompt', 'a photo of', '--caption-prefix', 'hand drawn', '--caption-suffix', 'flat');
    const id = started.workflowId;
    const waiting = await until(() => ok<PipelineProgress & { state: string }>('status', id), (s) => s.stage === 'awaiting-captions', 180_000, 1000);
    expect(waiting!.state).toMatch(/^awaiting caption review since \d{4}-.*loraflow captions pull/);

    const dir = path.join(tmp.dir, 'captions');
    expect(await ok('captions', 'pull', id, '--out', dir)).toEqual({ files: 3, dir });
    expect(await readFile(path.join(dir, 'img-0.txt'), 'utf8')).toBe('lfrev, hand drawn, a test square number 0, flat\n');
    expect(await readFile(path.join(dir, 'img-2.txt'), 'utf8')).toMatch(/^lfrev, hand drawn, a photo of .+, flat\n$/); // captioned on the GPU
    await writeFile(path.join(dir, 'img-1.txt'), 'a hand-edited caption');
    expect(await ok('captions', 'push', id, dir)).toEqual({ changed: 1, images: 3 });
    await ok('continue', id);
    const refused = await loraflow('continue', id);
    expect(refused.stderr).toMatch(/is not awaiting caption review \(stage: (train|publish|published)\)/);

    const done = await until(() => ok<PipelineProgress>('status', id), (s) => s.stage === 'published' || s.stage === 'failed', 240_000, 1000);
    expect(done!.stage, done!.error).toBe('published');
    const storage = makeStorage(stack.config);
    const meta = await metadataOf(done!.result!);
    const trainedOn = await getJson<Captions>(storage, keyOfUri(done!.result!.metadataUri).replace(/metadata\.json$/, 'captions.json'));
    const manifest = await getJson<DatasetManifest>(storage, manifestKey(meta.dataset.manifestSha256));
    const edited = manifest.images.find((i) => i.source === 'img-1.png')!;
    expect(trainedOn[edited.id]).toBe('lfrev, a hand-edited caption');
    // The worker writes the sha256 of the ids and captions it trained on into the LoRA's header.
    const lora = await getBytes(storage, keyOfUri(done!.result!.uri));
    const header = JSON.parse(lora.subarray(8, 8 + Number(lora.readBigUInt64LE(0))).toString('utf8')) as { __metadata__: Record<string, string> };
    expect(header.__metadata__.ss_dataset_sha256).toBe(sha256(manifest.images.map((i) => `${i.id} ${trainedOn[i.id]}`).join('\n')));
  }, 420_000);
});
