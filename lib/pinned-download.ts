// Downloads one URL to a file over a connection to an address checked beforehand
// (lib/url-guard.ts): the socket's lookup answers with that address, so the name is never resolved
// a second time, while TLS still verifies the certificate against the URL's host name. Redirects
// are not followed, a connection must open within connectTimeoutMs and bytes keep arriving at
// least every readTimeoutMs, and the size cap holds while streaming (not only from Content-Length).
import { createWriteStream } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import type { ResolvedAddress } from './url-guard.js';

export interface DownloadLimits {
  connectTimeoutMs: number;
  readTimeoutMs: number;
  maxBytes: number;
}

/** Why a download failed: `retryable` when trying again later may work (5xx, timeouts, resets). */
export class DownloadError extends Error {
  override name = 'DownloadError';
  constructor(message: string, readonly retryable: boolean) {
    super(message);
  }
}

export async function downloadPinned(
  url: URL,
  to: ResolvedAddress,
  file: string,
  opts: DownloadLimits & { onProgress?: (bytes: number) => void; signal?: AbortSignal },
): Promise<number> {
  const lookup: LookupFunction = (_host, options, callback) => {
    if ((options as { all?: boolean }).all) (callback as unknown as (e: null, a: ResolvedAddress[]) => void)(null, [to]);
    else callback(null, to.address, to.family);
  };
  const client = url.protocol === 'https:' ? https : http;
  /** Set when a timer gave up: destroying the request then surfaces only as "aborted". */
  let gaveUp: DownloadError | undefined;
  const giveUp = (req: http.ClientRequest, err: DownloadError) => {
    gaveUp = err;
    req.destroy(err);
  };
  const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = client.get(url, { lookup, signal: opts.signal, headers: { accept: 'application/zip, application/octet-stream;q=0.9, */*;q=0.1' } }, resolve);
    const connectTimer = setTimeout(() => giveUp(req, new DownloadError(`no connection within ${opts.connectTimeoutMs} ms`, true)), opts.connectTimeoutMs);
    req.on('socket', (socket) => {
      const connected = () => clearTimeout(connectTimer);
      if (!socket.connecting) connected();
      socket.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', connected);
    });
    req.setTimeout(opts.readTimeoutMs, () => giveUp(req, new DownloadError(`no answer for ${opts.readTimeoutMs} ms`, true)));
    req.on('error', (err) => {
      clearTimeout(connectTimer);
      reject(gaveUp ?? (err instanceof DownloadError || opts.signal?.aborted ? err : new DownloadError(`${err.name}: ${err.message}`, true)));
    });
    req.on('response', () => clearTimeout(connectTimer));
  });

  const status = response.statusCode ?? 0;
  if (status >= 300 || status < 200) {
    response.resume();
    if (status >= 300 && status < 400) throw new DownloadError(`redirects are not followed (HTTP ${status})`, false);
    throw new DownloadError(`HTTP ${status}`, status >= 500 || status === 429 || status === 408);
  }
  const declared = Number(response.headers['content-length'] ?? NaN);
  if (declared > opts.maxBytes) {
    response.destroy();
    throw new DownloadError(`is ${declared} bytes, more than the ${opts.maxBytes} allowed (LORAFLOW_DATASET_MAX_BYTES)`, false);
  }

  let bytes = 0;
  const counted = new Transform({
    transform(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      if (bytes > opts.maxBytes) return done(new DownloadError(`is larger than the ${opts.maxBytes} bytes allowed (LORAFLOW_DATASET_MAX_BYTES)`, false));
      opts.onProgress?.(bytes);
      done(null, chunk);
    },
  });
  // The idle timer of the request's socket keeps running while the body streams.
  await pipeline(response, counted, createWriteStream(file), { signal: opts.signal }).catch((err: Error) => {
    throw gaveUp ?? (err instanceof DownloadError || opts.signal?.aborted ? err : new DownloadError(`the download broke off: ${err.message}`, true));
  });
  return bytes;
}
