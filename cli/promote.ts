// `loraflow promote NAME@VERSION --step N`: make a kept step (lora-step<N>.safetensors) the version's
// LoRA and `latest`. Only bytes whose sha256 metadata.json records are copied (ETag-conditional); the
// LoRA the training ended with is kept as lora-step<final>.safetensors first, so promoting is undone
// by promoting the final step. metadata.json is written last and says which step is promoted: a
// promote cut short leaves the old metadata in force, and running it again completes it.
import { type LoraMetadata, LoraName } from '../contract/pipeline.js';
import { loraKeys } from '../lib/keys.js';
import { copyObject, getBytesIfExists, putBytes, s3Uri, sha256OfObject, type Storage } from '../lib/s3.js';
import { readLatest, recordLatest } from '../activities/publish.js';
import { CliError } from './connect.js';

export interface Promoted {
  name: string;
  version: string;
  step: number;
  uri: string;
  sha256: string;
  /** The LoRA the training ended with, kept beside it. */
  final: { step: number; sha256: string; bytes: number; uri: string };
  latest: boolean;
}

/** NAME@VERSION, checked: the name as LoraName, the version as publish writes it. */
export function parseRef(ref: string): { name: string; version: string } {
  const m = /^([^@]+)@([0-9]{8}-[0-9]{6}-[0-9a-f-]{1,36})$/.exec(ref);
  if (!m || !LoraName.safeParse(m[1]).success) throw new CliError(`NAME@VERSION: expected e.g. my-style@20261125-093012-1a2b3c4d, got ${JSON.stringify(ref)}`);
  return { name: m[1]!, version: m[2]! };
}

export async function promote(storage: Storage, ref: string, step: number): Promise<Promoted> {
  const { name, version } = parseRef(ref);
  const keys = loraKeys(name, version);
  const raw = await getBytesIfExists(storage, keys.metadata);
  if (!raw) throw new CliError(`${name}@${version}: no published version at ${s3Uri(storage, keys.metadata)}`, 'not-found');
  const meta = JSON.parse(raw.toString('utf8')) as LoraMetadata;
  const final = meta.promoted?.final ?? { step: meta.metrics.steps, sha256: meta.lora.sha256, bytes: meta.lora.bytes, uri: s3Uri(storage, keys.stepLora(meta.metrics.steps)) };
  const kept = [...(meta.savedSteps ?? []), final];
  const target = kept.find((s) => s.step === step);
  if (!target) throw new CliError(`--step: ${name}@${version} kept no LoRA at step ${step}; kept steps: ${kept.map((s) => s.step).join(', ')} (train with --save-every)`, 'not-found');

  /** The object at `key` if it holds exactly these bytes (its ETag pins them for the copy). */
  const verified = async (key: string, want: { sha256: string; bytes: number }) => {
    const stored = await sha256OfObject(storage, key);
    return stored && stored.sha256 === want.sha256 && stored.bytes === want.bytes ? stored : undefined;
  };
  const finalKey = keys.stepLora(final.step);
  if (!(await verified(finalKey, final))) {
    // First promote: the current lora.safetensors is the final one; keep a copy before replacing it.
    const current = await verified(keys.lora, final);
    if (!current) throw new CliError(`${s3Uri(storage, keys.lora)} is not the LoRA metadata.json records (sha256 ${final.sha256}); not promoting`);
    await copyObject(storage, keys.lora, finalKey, { ifMatch: current.etag });
  }
  const sourceKey = keys.stepLora(step);
  const source = await verified(sourceKey, target);
  if (!source) throw new CliError(`${s3Uri(storage, sourceKey)} is missing or not the sha256 metadata.json records (${target.sha256}); not promoting`);
  await copyObject(storage, sourceKey, keys.lora, { ifMatch: source.etag });

  const updated: LoraMetadata = { ...meta, lora: { sha256: target.sha256, bytes: target.bytes }, promoted: { step, at: new Date().toISOString(), final } };
  await putBytes(storage, keys.metadata, JSON.stringify(updated, null, 2), 'application/json');
  const uri = s3Uri(storage, keys.lora);
  await recordLatest({ storage }, { name, version, manifestSha256: meta.dataset.manifestSha256, uri, metadataUri: s3Uri(storage, keys.metadata), step }, { force: true });
  const latest = await readLatest({ storage }, name);
  return { name, version, step, uri, sha256: target.sha256, final, latest: latest?.version === version && latest.step === step };
}
