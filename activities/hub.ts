// hub: an optional push of a published LoRA to the Hugging Face Hub (@huggingface/hub). It reads
// loras/<name>/<version>/metadata.json, streams lora.safetensors and the sample PNGs from S3 and
// commits them with a model card (README.md) in one commit titled `loraflow: <name> <version>`
// to the repo `<namespace>/<name>` (LORAFLOW_HF_REPO changes the pattern), creating it private
// unless LORAFLOW_HF_PRIVATE=false. Re-running finds its own commit by title and pushes nothing;
// a version older than one already on the Hub is not pushed over it. The token (HF_TOKEN) is sent
// only as the library's Bearer header: never logged, returned or put in a failure message.
import { ApplicationFailure, Context, heartbeat, log } from '@temporalio/activity';
import { HubApiError, type CommitOperation, commitIter, createRepo, listCommits, listFiles, repoExists, whoAmI } from '@huggingface/hub';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { z } from 'zod';
import { Sha256 } from '../contract/gpu-job.js';
import { LoraName } from '../contract/pipeline.js';
import { scrubUrls } from '../lib/logger.js';
import { type Storage, exists, getBytesIfExists, sha256OfObject } from '../lib/s3.js';
import type { ActivityDeps, HubDeps } from './deps.js';
import { parseInput } from './ingest.js';

export const HubPushInput = z.object({ metadataKey: z.string().regex(/^loras\/[^/]+\/[^/]+\/metadata\.json$/) });
export type HubPushInput = z.input<typeof HubPushInput>;

export interface HubPushResult {
  /** `<namespace>/<repo>` on the Hub (absent when not configured). */
  repo?: string;
  /** The repo's page (LORAFLOW_HF_ENDPOINT/<repo>): no credentials. */
  url?: string;
  /** pushed: this call made the commit; already-pushed: an earlier attempt did (its commit is
   * returned); newer-version-on-hub: a later version of this LoRA is there, nothing was pushed;
   * not-configured: HF_TOKEN is not set on this worker, so pushing is off. */
  outcome: 'pushed' | 'already-pushed' | 'newer-version-on-hub' | 'not-configured';
  /** The commit holding this version (absent for newer-version-on-hub). */
  revision?: string;
  commitUrl?: string;
}

/** The parts of metadata.json (written by publish) the push reads; a bad field is named. */
export const HubMetadata = z.object({
  name: LoraName,
  version: z.string().regex(/^[A-Za-z0-9._-]{1,100}$/),
  triggerWord: z.string().min(1),
  baseModel: z.string().min(1),
  format: z.string().min(1).optional(),
  params: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])),
  lora: z.object({ sha256: Sha256, bytes: z.int().nonnegative() }),
  samples: z.array(z.object({ step: z.int().nonnegative(), sha256: Sha256.optional() })),
  dataset: z.object({ manifestSha256: Sha256, images: z.int().nonnegative() }),
  metrics: z.object({ steps: z.int().nonnegative(), finalLoss: z.number() }).optional(),
});
export type HubMetadata = z.infer<typeof HubMetadata>;

export const commitTitle = (name: string, version: string) => `loraflow: ${name} ${version}`;
const samplePath = (step: number) => `samples/step-${step}.png`;

// ---------------------------------------------------------------------------------------------
// The model card

/** YAML scalar: a JSON string is a valid YAML double-quoted string, whatever it contains. */
const yamlString = (s: string) => JSON.stringify(s);
/** Markdown text on one line: characters that could format, link or open HTML are escaped. */
const mdText = (s: string) =>
  s.replace(/\s*\n\s*/g, ' ').replace(/[\\`*_[\]|~<>&]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;' })[c] ?? `\\${c}`);
/** An inline code span that no backtick in `s` can close. */
function mdCode(s: string): string {
  const text = s.replace(/\s*\n\s*/g, ' ');
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((run) => run.length));
  const fence = '`'.repeat(longest + 1);
  return longest ? `${fence} ${text} ${fence}` : `${fence}${text}${fence}`;
}
const cell = (s: string) => s.replace(/\|/g, '\\|');

/**
 * README.md for the Hub: YAML front matter (base_model when the worker's base model name has a
 * Hub id, tags, instance_prompt, library_name, a widget entry per sample image), then the trigger
 * word, base model, training parameters, dataset, the LoRA's sha256 and the samples.
 */
export function modelCard(metadata: HubMetadata, options: { baseModelId?: string; repo?: string } = {}): string {
  const m = metadata;
  const samples = [...m.samples].sort((a, b) => a.step - b.step);
  const front = [
    '---',
    ...(options.baseModelId ? [`base_model: ${yamlString(options.baseModelId)}`] : []),
    'library_name: diffusers',
    `instance_prompt: ${yamlString(m.triggerWord)}`,
    'tags:',
    ...['lora', 'text-to-image', 'diffusers', 'loraflow'].map((t) => `- ${t}`),
    ...(samples.length
      ? ['widget:', ...samples.flatMap((s) => [`- text: ${yamlString(m.triggerWord)}`, '  output:', `    url: ${yamlString(samplePath(s.step))}`])]
      : []),
    '---',
  ];
  const baseModel = options.baseModelId
    ? `${mdCode(m.baseModel)} (${mdCode(options.baseModelId)} on the Hub)`
    : `${mdCode(m.baseModel)} (the GPU worker's name for it; no Hub id configured in LORAFLOW_HF_BASE_MODELS)`;
  const params: [string, string][] = [
    ...Object.entries(m.params).map(([k, v]): [string, string] => [k, v === null ? '—' : String(v)]),
    ...(m.format ? [['format', m.format] as [string, string]] : []),
    ...(m.metrics ? ([['steps trained', String(m.metrics.steps)], ['final loss', m.metrics.finalLoss.toPrecision(4)]] as [string, string][]) : []),
  ];
  const usage =
    m.format === 'kohya'
      ? 'The weights use kohya key names: load `lora.safetensors` in ComfyUI or AUTOMATIC1111.'
      : ['With diffusers, on a pipeline of the base model:', '', '```python', `pipe.load_lora_weights(${JSON.stringify(options.repo ?? '<this repo>')}, weight_name="lora.safetensors")`, '```'].join('\n');
  const body = [
    `# ${mdText(m.name)}`,
    '',
    `A LoRA trained with loraflow, version ${mdCode(m.version)}.`,
    '',
    '## Trigger word',
    '',
    `Use ${mdCode(m.triggerWord)} in the prompt.`,
    '',
    '## Base model',
    '',
    baseModel,
    '',
    '## Training parameters',
    '',
    '| parameter | value |',
    '| --- | --- |',
    ...params.map(([k, v]) => `| ${cell(mdCode(k))} | ${cell(mdCode(v))} |`),
    '',
    '## Dataset',
    '',
    `${m.dataset.images} image${m.dataset.images === 1 ? '' : 's'}; manifest sha256 ${mdCode(m.dataset.manifestSha256)}.`,
    '',
    '## Weights',
    '',
    `\`lora.safetensors\`: ${m.lora.bytes} bytes, sha256 ${mdCode(m.lora.sha256)}.`,
    '',
    usage,
    '',
    '## Samples',
    '',
    ...(samples.length
      ? [`Rendered with the prompt ${mdCode(m.triggerWord)} during training:`, '', ...samples.map((s) => `![step ${s.step}](${samplePath(s.step)})`)]
      : ['No sample images were rendered.']),
    '',
  ];
  return [...front, '', ...body].join('\n');
}

// ---------------------------------------------------------------------------------------------
// The push

export async function pushToHub(deps: ActivityDeps, raw: HubPushInput): Promise<HubPushResult> {
  const input = parseInput(HubPushInput, raw);
  const hub = deps.hub;
  // The workflow calls this after every publish: pushing is on where the worker has HF_TOKEN.
  if (!hub?.token) return { outcome: 'not-configured' };
  const meta = await readMetadata(deps.storage, input.metadataKey);
  const prefix = input.metadataKey.replace(/\/metadata\.json$/, '');
  if (prefix !== `loras/${meta.name}/${meta.version}`) {
    throw ApplicationFailure.nonRetryable(`${input.metadataKey}: metadata names ${meta.name} ${meta.version}, not this key's LoRA`, 'InvalidMetadata');
  }

  // Only the verified artifact goes out: the stored LoRA must still be what metadata.json says.
  const loraKey = `${prefix}/lora.safetensors`;
  const stored = await sha256OfObject(deps.storage, loraKey);
  if (!stored || stored.sha256 !== meta.lora.sha256 || stored.bytes !== meta.lora.bytes) {
    throw ApplicationFailure.nonRetryable(
      `${loraKey}: ${stored ? `sha256 ${stored.sha256} (${stored.bytes} bytes)` : 'missing'}, metadata.json says sha256 ${meta.lora.sha256} (${meta.lora.bytes} bytes)`,
      'ArtifactNotVerified',
    );
  }
  const samples: { step: number; key: string; bytes: number }[] = [];
  for (const sample of meta.samples) {
    const key = `${prefix}/${samplePath(sample.step)}`;
    const head = await exists(deps.storage, key);
    if (head) samples.push({ step: sample.step, key, bytes: head.bytes });
    else log.warn('hub: sample image missing in S3, left out', { key });
  }

  const call = hubCaller(hub);
  const repo = await call('resolving the repo', () => repoIdFor(hub, meta.name));
  const url = `${hub.endpoint}/${repo}`;
  const creds = { accessToken: hub.token, hubUrl: hub.endpoint };

  if (!(await call(`checking ${repo}`, () => repoExists({ repo, ...creds })))) {
    await call(`creating ${repo}`, async () => {
      try {
        await createRepo({ repo, visibility: hub.private ? 'private' : 'public', ...creds });
        log.info('hub: repo created', { repo, private: hub.private });
      } catch (err) {
        if (!(err instanceof HubApiError && err.statusCode === 409)) throw err; // created meanwhile
      }
    });
  }

  // Idempotence: this version's commit already there → done; a later version there → keep it.
  const title = commitTitle(meta.name, meta.version);
  const ours = new RegExp(`^${commitTitle(meta.name, '').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(\\S+)$`);
  const recent = await call(`listing commits of ${repo}`, async () => {
    const commits: { oid: string; title: string }[] = [];
    for await (const c of listCommits({ repo, batchSize: 100, ...creds })) {
      commits.push({ oid: c.oid, title: c.title });
      if (commits.length >= 100) break;
    }
    return commits;
  });
  const done = recent.find((c) => c.title === title);
  if (done) {
    log.info('hub: this version is already on the Hub', { repo, revision: done.oid });
    return { repo, url, outcome: 'already-pushed', revision: done.oid, commitUrl: `${url}/commit/${done.oid}` };
  }
  const newer = recent.map((c) => ours.exec(c.title)?.[1]).find((v) => v !== undefined && v > meta.version);
  if (newer) {
    log.warn('hub: a newer version is already on the Hub; not pushed over it', { repo, version: meta.version, onHub: newer });
    return { repo, url, outcome: 'newer-version-on-hub' };
  }

  // Samples of an earlier version that this one does not have would describe the wrong weights.
  const stale = await call(`listing files of ${repo}`, async () => {
    const paths: string[] = [];
    for await (const f of listFiles({ repo, recursive: true, ...creds })) {
      if (f.type === 'file' && f.path.startsWith('samples/') && !samples.some((s) => samplePath(s.step) === f.path)) paths.push(f.path);
    }
    return paths;
  });

  const card = modelCard({ ...meta, samples: meta.samples.filter((s) => samples.some((k) => k.step === s.step)) }, { baseModelId: hub.baseModels?.[meta.baseModel], repo });
  const operations: CommitOperation[] = [
    { operation: 'addOrUpdate', path: 'README.md', content: new Blob([card], { type: 'text/markdown' }) },
    { operation: 'addOrUpdate', path: 'lora.safetensors', content: new S3ObjectBlob(deps.storage, loraKey, 0, stored.bytes) },
    ...samples.map((s): CommitOperation => ({ operation: 'addOrUpdate', path: samplePath(s.step), content: new S3ObjectBlob(deps.storage, s.key, 0, s.bytes, 'image/png') })),
    ...stale.map((path): CommitOperation => ({ operation: 'delete', path })),
  ];
  const result = await call(`committing to ${repo}`, async () => {
    const iter = commitIter({
      repo,
      title,
      description: `LoRA sha256 ${meta.lora.sha256}, dataset manifest sha256 ${meta.dataset.manifestSha256}.`,
      operations,
      // A commit made meanwhile (another run) fails this one; the retry sees it.
      ...(recent[0] ? { parentCommit: recent[0].oid } : {}),
      abortSignal: Context.current().cancellationSignal,
      ...creds,
    });
    for (;;) {
      const step = await iter.next();
      if (step.done) return step.value;
      heartbeat(step.value.event === 'phase' ? { phase: step.value.phase } : { path: step.value.path, state: step.value.state });
    }
  });
  const revision = result?.commit.oid;
  const commitUrl = result?.commit.url ?? (revision ? `${url}/commit/${revision}` : undefined);
  log.info('LoRA pushed to the Hub', { repo, version: meta.version, revision, files: operations.length });
  return { repo, url, outcome: 'pushed', ...(revision ? { revision } : {}), ...(commitUrl ? { commitUrl: scrubUrls(commitUrl) } : {}) };
}

async function readMetadata(storage: Storage, key: string): Promise<HubMetadata> {
  const bytes = await getBytesIfExists(storage, key);
  if (!bytes) throw ApplicationFailure.nonRetryable(`${key} does not exist: publish the LoRA first`, 'InvalidMetadata');
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw ApplicationFailure.nonRetryable(`${key} is not JSON: ${err instanceof Error ? err.message : String(err)}`, 'InvalidMetadata');
  }
  const parsed = HubMetadata.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw ApplicationFailure.nonRetryable(`${key}: ${issue.path.join('.') || '(root)'}: ${issue.message}`, 'InvalidMetadata');
  }
  return parsed.data;
}

/** Hub repo names: letters, digits, ".", "_", "-", no "--" or "..", not starting or ending with "-" or ".". */
const HUB_REPO_ID = /^[A-Za-z0-9](?:[\w.-]*[A-Za-z0-9])?\/[A-Za-z0-9_](?:[\w.-]{0,94}[A-Za-z0-9_])?$/;

/** `<namespace>/<name>`, or LORAFLOW_HF_REPO with `{name}` replaced; the namespace defaults to the token's user. */
async function repoIdFor(hub: HubDeps, name: string): Promise<string> {
  const template = hub.repoTemplate ?? `${hub.namespace ?? (await whoAmI({ accessToken: hub.token, hubUrl: hub.endpoint })).name}/{name}`;
  const repo = template.replaceAll('{name}', name);
  if (!HUB_REPO_ID.test(repo) || repo.includes('--') || repo.includes('..') || repo.endsWith('.git')) {
    throw ApplicationFailure.nonRetryable(
      `"${repo}" is not a valid Hub repo id (letters, digits, ".", "_", "-"; no "--" or ".."; not ending in "-" or "."): rename the LoRA or set LORAFLOW_HF_REPO`,
      'InvalidHubRepo',
    );
  }
  return repo;
}

/**
 * Runs a Hub call and turns its failure into an ApplicationFailure: 401/403 name HF_TOKEN and are
 * not retried, other 4xx (bad repo, not found) are not retried either, the rest (5xx, 429, a
 * parentCommit race, the network) are. Messages are scrubbed of the token and of URL query strings
 * (LFS upload URLs are presigned).
 */
function hubCaller(hub: HubDeps) {
  const clean = (s: string) => scrubUrls(s.split(hub.token).join('<redacted>')).replace(/Bearer\s+\S+/g, 'Bearer <redacted>');
  return async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof ApplicationFailure) throw err;
      if (err instanceof HubApiError) {
        const detail = clean(err.message);
        if (err.statusCode === 401 || err.statusCode === 403) {
          throw ApplicationFailure.nonRetryable(
            `the Hugging Face Hub refused HF_TOKEN (HTTP ${err.statusCode}) while ${what}: check that HF_TOKEN is valid and may write to the repo's namespace (${detail})`,
            'HubAuthFailed',
          );
        }
        if (err.statusCode >= 400 && err.statusCode < 500 && ![408, 409, 412, 429].includes(err.statusCode)) {
          throw ApplicationFailure.nonRetryable(`the Hugging Face Hub rejected ${what} (HTTP ${err.statusCode}): ${detail}`, 'HubRejected');
        }
        throw ApplicationFailure.retryable(`the Hugging Face Hub failed ${what} (HTTP ${err.statusCode}): ${detail}`, 'HubUnavailable');
      }
      const message = err instanceof Error ? `${err.name}: ${err.message}${err.cause instanceof Error ? ` (${err.cause.message})` : ''}` : String(err);
      const cancelled = Context.current().cancellationSignal;
      if (cancelled.aborted) throw cancelled.reason ?? err;
      throw ApplicationFailure.retryable(`pushing to the Hugging Face Hub failed while ${what}: ${clean(message)}`, 'HubUnavailable');
    }
  };
}

/**
 * An S3 object (or a byte range of it) as a Blob: the library reads its size, slices it and
 * streams it (sha256, upload) without the whole LoRA ever being held in memory.
 */
export class S3ObjectBlob extends Blob {
  constructor(
    private readonly storage: Storage,
    private readonly key: string,
    private readonly start: number,
    private readonly end: number,
    private readonly contentType = 'application/octet-stream',
  ) {
    super([]);
  }

  override get size(): number {
    return this.end - this.start;
  }

  override get type(): string {
    return this.contentType;
  }

  override slice(start = 0, end = this.size, contentType?: string): Blob {
    const at = (i: number) => Math.min(this.size, Math.max(0, i < 0 ? this.size + i : i));
    const [from, to] = [at(start), at(end)];
    return new S3ObjectBlob(this.storage, this.key, this.start + from, this.start + Math.max(from, to), contentType ?? this.contentType);
  }

  override stream(): ReturnType<Blob['stream']> {
    if (this.size === 0) return new Blob([]).stream();
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
    this.storage.client
      .send(new GetObjectCommand({ Bucket: this.storage.bucket, Key: this.key, Range: `bytes=${this.start}-${this.end - 1}` }))
      .then((res) => (res.Body!.transformToWebStream() as ReadableStream<Uint8Array>).pipeTo(writable))
      .catch((err: unknown) => writable.abort(err).catch(() => undefined));
    return readable as ReturnType<Blob['stream']>;
  }

  override async arrayBuffer(): Promise<ArrayBuffer> {
    const chunks: Uint8Array[] = [];
    for await (const chunk of this.stream() as AsyncIterable<Uint8Array>) chunks.push(chunk);
    const all = Buffer.concat(chunks);
    return all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
  }

  override async text(): Promise<string> {
    return new TextDecoder().decode(await this.arrayBuffer());
  }
}
