// hub: an optional push of a published LoRA to the Hugging Face Hub (@huggingface/hub). It reads
// loras/<name>/<version>/metadata.json, streams lora.safetensors and the sample PNGs from S3 and
// commits them with a model card (README.md) in one commit titled `loraflow: <name> <version>`
// to the repo `<namespace>/<name>` (LORAFLOW_HF_REPO changes the pattern), creating it private
// unless LORAFLOW_HF_PRIVATE=false. Re-running finds its own commit by title and pushes nothing;
// a version older than one already on the Hub is not pushed over it. The token (HF_TOKEN) is sent
// only as the library's Bearer header: never logged, returned or put in a failure message.
import { ApplicationFailure, Context, heartbeat, log } from '@temporalio/activity';
import { HubApiError, type CommitOperation, commitIter, createRepo, downloadFile, listCommits, listFiles, repoExists, whoAmI } from '@huggingface/hub';
import { z } from 'zod';
import { loraKeys, METADATA_KEY } from '../lib/keys.js';
import { scrubUrls } from '../lib/logger.js';
import { S3ObjectBlob, type Storage, exists, getBytesIfExists, sha256OfObject } from '../lib/s3.js';
import type { ActivityDeps, HubDeps } from './deps.js';
import { parseInput } from './input.js';
import { HubMetadata, LORAFLOW_MARKER, modelCard, samplePath } from './model-card.js';

export const HubPushInput = z.object({ metadataKey: z.string().regex(METADATA_KEY) });
export type HubPushInput = z.input<typeof HubPushInput>;

export const commitTitle = (name: string, version: string) => `loraflow: ${name} ${version}`;

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

export async function pushToHub(deps: ActivityDeps, raw: HubPushInput): Promise<HubPushResult> {
  const input = parseInput(HubPushInput, raw);
  const hub = deps.hub;
  // The workflow calls this after every publish: pushing is on where the worker has HF_TOKEN.
  if (!hub?.token) return { outcome: 'not-configured' };
  const meta = await readMetadata(deps.storage, input.metadataKey);
  const keys = loraKeys(meta.name, meta.version);
  if (input.metadataKey !== keys.metadata) {
    throw ApplicationFailure.nonRetryable(`${input.metadataKey}: metadata names ${meta.name} ${meta.version}, not this key's LoRA`, 'InvalidMetadata');
  }

  // Only the verified artifact goes out: the stored LoRA must still be what metadata.json says.
  const loraKey = keys.lora;
  const stored = await sha256OfObject(deps.storage, loraKey);
  if (!stored || stored.sha256 !== meta.lora.sha256 || stored.bytes !== meta.lora.bytes) {
    throw ApplicationFailure.nonRetryable(
      `${loraKey}: ${stored ? `sha256 ${stored.sha256} (${stored.bytes} bytes)` : 'missing'}, metadata.json says sha256 ${meta.lora.sha256} (${meta.lora.bytes} bytes)`,
      'ArtifactNotVerified',
    );
  }
  const samples: { step: number; key: string; bytes: number }[] = [];
  // The first prompt's samples (the one the card describes; samplePath has no room for more).
  for (const sample of meta.samples.filter((x) => !x.prompt)) {
    const key = keys.sample(sample.step);
    const head = await exists(deps.storage, key);
    if (head) samples.push({ step: sample.step, key, bytes: head.bytes });
    else log.warn('hub: sample image missing in S3, left out', { key });
  }

  const call = hubCaller(hub);
  const repo = await call('resolving the repo', () => repoIdFor(hub, meta.name));
  const url = `${hub.endpoint}/${repo}`;
  const creds = { accessToken: hub.token, hubUrl: hub.endpoint };

  let created = false;
  if (!(await call(`checking ${repo}`, () => repoExists({ repo, ...creds })))) {
    await call(`creating ${repo}`, async () => {
      try {
        await createRepo({ repo, visibility: hub.private ? 'private' : 'public', ...creds });
        created = true;
        log.info('hub: repo created', { repo, private: hub.private });
      } catch (err) {
        if (!(err instanceof HubApiError && err.statusCode === 409)) throw err; // created meanwhile: checked below
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

  // Someone else's repo of the same name is not overwritten (nor its samples deleted) unless the
  // request allows it: loraflow pushes only into repos it created, which its card marks. (The
  // checks above write nothing.)
  if (!created && !meta.hub?.allowExistingRepo) await assertLoraflowRepo(call, repo, creds);

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

/** An empty repo (a creation whose first push failed) or one whose README.md carries the marker. */
async function assertLoraflowRepo(call: ReturnType<typeof hubCaller>, repo: string, creds: { accessToken: string; hubUrl: string }): Promise<void> {
  const paths = await call(`listing files of ${repo}`, async () => {
    const found: string[] = [];
    for await (const f of listFiles({ repo, recursive: true, ...creds })) if (f.type === 'file') found.push(f.path);
    return found;
  });
  if (paths.every((p) => p === '.gitattributes')) return;
  const card = paths.includes('README.md')
    ? await call(`reading ${repo}/README.md`, async () => (await downloadFile({ repo, path: 'README.md', raw: true, xet: false, ...creds }))?.text())
    : undefined;
  if (card?.includes(LORAFLOW_MARKER)) return;
  throw ApplicationFailure.nonRetryable(
    `${repo} already exists and was not created by loraflow (its README.md has no loraflow marker): nothing was pushed into it. Rename the LoRA, set LORAFLOW_HF_REPO, or allow it for this run with \`loraflow train --hub-existing-repo\``,
    'HubRepoNotOurs',
  );
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
