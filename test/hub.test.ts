// Pushing a published LoRA to the Hugging Face Hub: the model card, and pushToHub with the real
// @huggingface/hub library reading from the real S3 server (versitygw) and talking to a
// protocol-level local stand-in for the Hub's endpoints (test/hub-recorder.ts), not the real Hub.
import { randomBytes } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { ActivityDeps, HubDeps } from '../activities/deps.js';
import { type HubPushResult, pushToHub } from '../activities/hub.js';
import { type HubMetadata, modelCard } from '../activities/model-card.js';
import { publishLora } from '../activities/publish.js';
import { TrainRequest } from '../contract/pipeline.js';
import { sha256 } from '../lib/hash.js';
import { temporalLoggerOf } from '../lib/logger.js';
import { getBytes, putBytes } from '../lib/s3.js';
import { startS3, tempDir, testConfig } from '../testkit/services.js';
import { activityDepsFrom } from '../activities/deps.js';
import { type HubRepo, startHubRecorder } from './hub-recorder.js';

const TOKEN = `hf_${randomBytes(24).toString('base64url').replace(/[^A-Za-z0-9]/g, 'x').slice(0, 34)}`;

let tmp: ReturnType<typeof tempDir>;
let s3: Awaited<ReturnType<typeof startS3>>;
let hub: Awaited<ReturnType<typeof startHubRecorder>>;
let deps: ActivityDeps;
let hubDeps: HubDeps;

beforeAll(async () => {
  tmp = tempDir('hub');
  s3 = await startS3(tmp.dir);
  hub = await startHubRecorder({ token: TOKEN, username: 'token-owner' });
  hubDeps = { token: TOKEN, endpoint: hub.url, namespace: 'test-org', private: true, baseModels: { 'tiny-sd': 'test-org/tiny-sd-base' } };
  deps = { ...activityDepsFrom(testConfig, { storage: s3.storage }), hub: hubDeps };
});
afterAll(async () => {
  await hub?.stop();
  await s3?.stop();
  tmp?.remove();
});

/** Every activity log call, unredacted, as the activity made it. */
function capturingLogger() {
  const lines: string[] = [];
  const logger = temporalLoggerOf((level, message, meta) => void lines.push(JSON.stringify({ level, message, meta })));
  return { lines, logger };
}

function push(input: { metadataKey: string }, withDeps: ActivityDeps = deps) {
  const { lines, logger } = capturingLogger();
  const result = new MockActivityEnvironment({}, { logger }).run(pushToHub, withDeps, input) as Promise<HubPushResult>;
  return { result, lines };
}

async function expectFailure(p: Promise<unknown>, type: string, message: RegExp) {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ApplicationFailure);
  expect((err as ApplicationFailure).type).toBe(type);
  expect((err as ApplicationFailure).nonRetryable).toBe(true);
  expect((err as ApplicationFailure).message).toMatch(message);
  expect((err as ApplicationFailure).message).not.toContain(TOKEN);
  return err as ApplicationFailure;
}

const png = (r: number) => sharp({ create: { width: 16, height: 16, channels: 3, background: { r, g: 40, b: 90 } } }).png().toBuffer();

/** Publishes a LoRA with the real publish activity (so metadata.json is what production writes). */
async function published(name: string, version: string, loraBytes: Buffer, steps: number[], hubOptions?: { allowExistingRepo: true }) {
  const samples = [];
  for (const step of steps) {
    const bytes = await png(step % 256);
    const key = `runs/${name}-${version}/samples/${step}.png`;
    await putBytes(s3.storage, key, bytes, 'image/png');
    samples.push({ step, key, sha256: sha256(bytes) });
  }
  const stagingKey = `runs/${name}-${version}/lora.safetensors`;
  await putBytes(s3.storage, stagingKey, loraBytes, 'application/octet-stream');
  await putBytes(s3.storage, 'c', '{}', 'application/json'); // the captions, copied beside the LoRA
  const request = TrainRequest.parse({ name, dataset: { path: '/d', fingerprint: 'f'.repeat(64) }, training: { triggerWord: 'lfhub', baseModel: 'tiny-sd', params: { steps: 300, rank: 4 } }, ...(hubOptions ? { hub: hubOptions } : {}) });
  const quiet = capturingLogger().logger;
  const result = (await new MockActivityEnvironment({}, { logger: quiet }).run(publishLora, deps, {
    request,
    version,
    dataset: { manifestKey: 'm', manifestSha256: 'e'.repeat(64), imageCount: 6, sidecarCaptions: 3, duplicatesDropped: 0 },
    captions: { captionsKey: 'c', sidecar: 3, gpuCaptioned: 3 },
    trained: { gpuJobId: 'job-1', gpuJobIds: ['job-1'], stagingKey, lora: { sha256: sha256(loraBytes), bytes: loraBytes.length }, samples, metrics: { steps: 300, finalLoss: 0.1234, lossCurve: [0.2, 0.1234], seconds: {}, device: 'cpu' } },
  })) as Awaited<ReturnType<typeof publishLora>>;
  return { metadataKey: result.metadataUri.replace(/^s3:\/\/[^/]+\//, ''), sha256: result.sha256 };
}

describe('pushToHub', () => {
  const repoOf = (id: string): HubRepo => hub.repos.get(id)!;

  it('creates the private repo and pushes card, LoRA and samples in one commit, sending the token only as a Bearer header', async () => {
    const lora = randomBytes(12 * 1024 * 1024 + 17); // over the library's 10 MB in-memory hashing limit: streamed
    const { metadataKey } = await published('hub-one', '20261125-000000-aaaaaaaa', lora, [100, 300]);
    const before = hub.requests.length;
    const { result, lines } = push({ metadataKey });
    const out = await result;

    expect(out).toMatchObject({ repo: 'test-org/hub-one', url: `${hub.url}/test-org/hub-one`, outcome: 'pushed' });
    const repo = repoOf('test-org/hub-one');
    expect(repo.visibility).toBe('private');
    expect(repo.commits.map((c) => c.title)).toEqual(['initial commit', 'loraflow: hub-one 20261125-000000-aaaaaaaa']);
    const commit = repo.commits.at(-1)!;
    expect(out.revision).toBe(commit.oid);
    expect(out.commitUrl).toBe(`${hub.url}/test-org/hub-one/commit/${commit.oid}`);
    expect(commit.parentCommit).toBe(repo.commits[0]!.oid);

    // What the library sent: one README (regular file) and LFS pointers for the LoRA and samples.
    expect(commit.lines.map((l) => `${l.key} ${String(l.value.path ?? '')}`).sort()).toEqual(
      ['header ', 'file README.md', 'lfsFile lora.safetensors', 'lfsFile samples/step-100.png', 'lfsFile samples/step-300.png'].sort(),
    );
    const readme = Buffer.from(commit.lines.find((l) => l.key === 'file')!.value.content as string, 'base64').toString();
    const stored = JSON.parse((await getBytes(s3.storage, metadataKey)).toString()) as HubMetadata;
    expect(readme).toBe(modelCard(stored, { baseModelId: 'test-org/tiny-sd-base', repo: 'test-org/hub-one' }));
    expect(parseYaml(/^---\n([\s\S]*?)\n---/.exec(readme)![1]!)).toMatchObject({ base_model: 'test-org/tiny-sd-base', instance_prompt: 'lfhub' });
    const loraPointer = commit.lines.find((l) => l.value.path === 'lora.safetensors')!.value;
    const s3Lora = await getBytes(s3.storage, metadataKey.replace('metadata.json', 'lora.safetensors'));
    expect(loraPointer).toMatchObject({ oid: sha256(s3Lora), size: s3Lora.length });
    expect(sha256(repo.files.get('lora.safetensors')!.bytes)).toBe(sha256(s3Lora));
    for (const step of [100, 300]) {
      const s3Png = await getBytes(s3.storage, metadataKey.replace('metadata.json', `samples/step-${step}.png`));
      expect(repo.files.get(`samples/step-${step}.png`)!.bytes.equals(s3Png)).toBe(true);
    }

    // The token: a Bearer header on every Hub API call, never on the upload URLs, never in logs or the result.
    const sent = hub.requests.slice(before);
    expect(hub.unhandled).toEqual([]);
    for (const r of sent) {
      if (r.path.startsWith('/lfs-upload/')) expect(r.authorization).toBeUndefined();
      else expect(r.authorization).toBe(`Bearer ${TOKEN}`);
    }
    expect(sent.map((r) => `${r.method} ${r.path.replace(/\?.*/, '')}`)).toEqual(
      expect.arrayContaining(['POST /api/repos/create', 'POST /api/models/test-org/hub-one/preupload/main', 'POST /test-org/hub-one.git/info/lfs/objects/batch', 'POST /api/models/test-org/hub-one/commit/main']),
    );
    expect(JSON.stringify(out)).not.toContain(TOKEN);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.join('\n')).not.toContain(TOKEN);
    expect(lines.join('\n')).toContain('LoRA pushed to the Hub');

    // Again for the same version: found by its commit title, nothing uploaded or committed.
    const again = hub.requests.length;
    const second = await push({ metadataKey }).result;
    expect(second).toEqual({ ...out, outcome: 'already-pushed' });
    expect(repo.commits).toHaveLength(2);
    expect(hub.requests.slice(again).map((r) => r.method)).toEqual(['GET', 'GET']); // repo exists?, commits
  });

  it('pushes a newer version over an older one (stale samples removed), never an older one over a newer', async () => {
    const v1 = await published('hub-two', '20261125-000000-11111111', Buffer.from('lora v1'), [100, 200]);
    const v2 = await published('hub-two', '20261126-000000-22222222', Buffer.from('lora v2'), [200]);
    const v0 = await published('hub-two', '20261124-000000-00000000', Buffer.from('lora v0'), []);
    expect((await push(v1).result).outcome).toBe('pushed');
    expect((await push(v2).result).outcome).toBe('pushed');
    const repo = repoOf('test-org/hub-two');
    expect([...repo.files.keys()].sort()).toEqual(['.gitattributes', 'README.md', 'lora.safetensors', 'samples/step-200.png']);
    expect(repo.files.get('lora.safetensors')!.bytes.toString()).toBe('lora v2');
    expect(repo.commits.at(-1)!.lines.filter((l) => l.key === 'deletedFile').map((l) => l.value.path)).toEqual(['samples/step-100.png']);

    const late = await push(v0).result;
    expect(late).toEqual({ repo: 'test-org/hub-two', url: `${hub.url}/test-org/hub-two`, outcome: 'newer-version-on-hub' });
    expect(repo.commits.map((c) => c.title).at(-1)).toBe('loraflow: hub-two 20261126-000000-22222222');
  });

  it("pushes into an existing repo only when loraflow created it (its card's marker), or when the request allows it", async () => {
    const foreign = (id: string): HubRepo => ({
      id,
      visibility: 'public',
      commits: [{ oid: 'f'.repeat(40), title: 'someone else’s model', lines: [] }],
      files: new Map([
        ['README.md', { bytes: Buffer.from('# my own model\n'), lfs: false }],
        ['samples/step-1.png', { bytes: Buffer.from('their sample'), lfs: true }],
      ]),
    });
    hub.repos.set('test-org/hub-six', foreign('test-org/hub-six'));
    const { metadataKey } = await published('hub-six', '20261125-000000-66666666', Buffer.from('lora six'), []);
    await expectFailure(push({ metadataKey }).result, 'HubRepoNotOurs', /test-org\/hub-six already exists and was not created by loraflow .*--hub-existing-repo/);
    expect(repoOf('test-org/hub-six').commits).toHaveLength(1);
    expect(repoOf('test-org/hub-six').files.has('samples/step-1.png')).toBe(true);

    // With the request's permission it is pushed (and from then on carries the marker).
    hub.repos.set('test-org/hub-seven', foreign('test-org/hub-seven'));
    const allowed = await published('hub-seven', '20261125-000000-77777777', Buffer.from('lora seven'), [], { allowExistingRepo: true });
    expect((await push(allowed).result).outcome).toBe('pushed');
    const later = await published('hub-seven', '20261126-000000-77777777', Buffer.from('lora seven b'), []);
    expect((await push(later).result).outcome).toBe('pushed');
    expect(hub.unhandled).toEqual([]);
  });

  it('names repos after the token owner without a namespace, or after LORAFLOW_HF_REPO, and keeps them public when asked', async () => {
    const { metadataKey } = await published('hub-three', '20261125-000000-33333333', Buffer.from('lora three'), []);
    const own = await push({ metadataKey }, { ...deps, hub: { ...hubDeps, namespace: undefined } }).result;
    expect(own.repo).toBe('token-owner/hub-three');
    const templated = await push({ metadataKey }, { ...deps, hub: { ...hubDeps, repoTemplate: 'team/loraflow-{name}', private: false } }).result;
    expect(templated.repo).toBe('team/loraflow-hub-three');
    expect(repoOf('team/loraflow-hub-three').visibility).toBe('public');
    const bad = push({ metadataKey }, { ...deps, hub: { ...hubDeps, repoTemplate: 'team/{name}-' } }).result;
    await expectFailure(bad, 'InvalidHubRepo', /"team\/hub-three-" is not a valid Hub repo id.*LORAFLOW_HF_REPO/);
  });

  it('fails without retrying, naming HF_TOKEN, when the Hub answers 401, and never prints the token', async () => {
    const refusing = await startHubRecorder({ token: TOKEN, failWith: 401 });
    try {
      const { metadataKey } = await published('hub-four', '20261125-000000-44444444', Buffer.from('lora four'), []);
      const { result, lines } = push({ metadataKey }, { ...deps, hub: { ...hubDeps, endpoint: refusing.url } });
      await expectFailure(result, 'HubAuthFailed', /refused HF_TOKEN \(HTTP 401\)/);
      expect(lines.join('\n')).not.toContain(TOKEN);
      expect(refusing.requests.every((r) => r.authorization === `Bearer ${TOKEN}`)).toBe(true);
    } finally {
      await refusing.stop();
    }
  });

  it('pushes nothing without HF_TOKEN, and refuses bad metadata (naming the field) or a LoRA that no longer matches it', async () => {
    const { metadataKey } = await published('hub-five', '20261125-000000-55555555', Buffer.from('lora five'), []);
    const requestsBefore = hub.requests.length;
    expect(await push({ metadataKey }, { ...deps, hub: undefined }).result).toEqual({ outcome: 'not-configured' });
    expect(hub.requests.length).toBe(requestsBefore);

    const bad = JSON.parse((await getBytes(s3.storage, metadataKey)).toString()) as Record<string, unknown>;
    await putBytes(s3.storage, 'loras/hub-bad/v1/metadata.json', JSON.stringify({ ...bad, name: 'hub-bad', version: 'v1', lora: { sha256: 'nope', bytes: 9 } }), 'application/json');
    await expectFailure(push({ metadataKey: 'loras/hub-bad/v1/metadata.json' }).result, 'InvalidMetadata', /loras\/hub-bad\/v1\/metadata\.json: lora\.sha256: expected a lowercase hex sha256/);

    await putBytes(s3.storage, metadataKey.replace('metadata.json', 'lora.safetensors'), 'replaced', 'application/octet-stream');
    await expectFailure(push({ metadataKey }).result, 'ArtifactNotVerified', /metadata\.json says sha256/);
    expect(hub.repos.has('test-org/hub-five')).toBe(false);
  });
});
