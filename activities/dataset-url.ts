// A dataset .zip at a URL: the host is resolved and checked once (lib/url-guard.ts), the zip is
// streamed to a temp file over a connection to that very address (lib/pinned-download.ts) with
// connect/read timeouts and a size cap, heartbeating as bytes arrive (a slow download is not
// mistaken for a dead activity and started twice), then read like a local zip.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ApplicationFailure, Context, heartbeat } from '@temporalio/activity';
import { DownloadError, downloadPinned } from '../lib/pinned-download.js';
import { resolveFetchable } from '../lib/url-guard.js';
import { invalid, type OpenedDataset } from './dataset-files.js';
import type { ActivityDeps } from './deps.js';

export async function fromUrl(deps: ActivityDeps, source: string, openZip: (file: string) => Promise<OpenedDataset>): Promise<OpenedDataset> {
  let url: URL;
  try {
    url = new URL(source);
  } catch {
    throw invalid(`not a valid URL: ${source.replace(/\?.*$/, '')}`);
  }
  const shown = `${url.origin}${url.pathname}`; // never the query string: it may be a signature
  const { datasets } = deps;
  const address = await resolveFetchable(url, { allowInternal: deps.allowPrivateUrls, ...(datasets.resolve ? { resolve: datasets.resolve } : {}) }).catch((err: Error) => {
    // A name that does not resolve now may resolve later (DNS trouble); every other refusal is final.
    if ('code' in err && (err.code === 'EAI_AGAIN' || err.code === 'ETIMEOUT')) throw ApplicationFailure.retryable(`${shown}: ${err.message}`, 'DatasetUnavailable');
    throw invalid(`${shown}: ${err.message}`);
  });

  const dir = await mkdtemp(path.join(os.tmpdir(), 'loraflow-dataset-'));
  const file = path.join(dir, 'dataset.zip');
  try {
    let signal: AbortSignal | undefined;
    try {
      signal = Context.current().cancellationSignal;
    } catch {
      signal = undefined; // outside an activity (benchmarks)
    }
    await downloadPinned(url, address, file, {
      connectTimeoutMs: datasets.connectTimeoutMs,
      readTimeoutMs: datasets.readTimeoutMs,
      maxBytes: datasets.maxBytes,
      onProgress: (bytes) => heartbeat({ phase: 'download', bytes }),
      ...(signal ? { signal } : {}),
    });
    const opened = await openZip(file);
    return { files: opened.files, close: () => opened.close().finally(() => rm(dir, { recursive: true, force: true })) };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    if (err instanceof DownloadError) {
      throw err.retryable ? ApplicationFailure.retryable(`${shown}: ${err.message}`, 'DatasetUnavailable') : invalid(`${shown}: ${err.message}`);
    }
    throw err;
  }
}
