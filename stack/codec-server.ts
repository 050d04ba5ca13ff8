// The codec endpoint of Temporal's Web UI (`--ui-codec-endpoint`): POST /encode and /decode with
// payloads in proto JSON. It answers only requests addressed to itself (the Host header names
// 127.0.0.1 or localhost and its port: a DNS-rebound page cannot reach it), grants CORS only to the
// configured UI origin (a request from any other origin is refused), and with LORAFLOW_CODEC_TOKEN
// set only requests that carry it as a bearer token, compared in constant time.
import { createHash, timingSafeEqual } from 'node:crypto';
import { type IncomingMessage, type Server, createServer } from 'node:http';
import type { Payload, PayloadCodec } from '@temporalio/common';

interface JsonPayload {
  metadata?: Record<string, string>;
  data?: string;
}

const fromJson = (p: JsonPayload): Payload => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
  data: Buffer.from(p.data ?? '', 'base64'),
});
const toJson = (p: Payload): JsonPayload => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v ?? []).toString('base64')])),
  data: Buffer.from(p.data ?? []).toString('base64'),
});

const MAX_BODY_CHARS = 64 * 2 ** 20;

/** Equal strings, in time that does not depend on where they differ (hashes equalise lengths). */
function sameSecret(given: string, expected: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

export async function startCodecServer(opts: { codec: PayloadCodec; port: number; allowOrigin: string; token?: string }): Promise<Server> {
  let port = opts.port;
  const hostAllowed = (req: IncomingMessage) => [`127.0.0.1:${port}`, `localhost:${port}`].includes((req.headers.host ?? '').toLowerCase());
  const server = createServer((req, res) => {
    if (!hostAllowed(req)) return void res.writeHead(421, { 'Content-Type': 'text/plain' }).end('misdirected request: unknown Host');
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== opts.allowOrigin) return void res.writeHead(403, { 'Content-Type': 'text/plain' }).end('origin not allowed');
    if (origin !== undefined) {
      res.setHeader('Access-Control-Allow-Origin', opts.allowOrigin);
      res.setHeader('Vary', 'Origin');
      res.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
      res.setHeader('Access-Control-Allow-Headers', 'Content-Type, Authorization, X-Namespace');
      res.setHeader('Access-Control-Allow-Credentials', 'true');
    }
    if (req.method === 'OPTIONS') return void res.writeHead(204).end();
    if (opts.token && !sameSecret(req.headers.authorization ?? '', `Bearer ${opts.token}`)) return void res.writeHead(401).end();
    const action = req.method === 'POST' ? req.url?.replace(/\/+$/, '') : undefined;
    if (action !== '/encode' && action !== '/decode') return void res.writeHead(404).end();
    let body = '';
    req.on('data', (chunk: Buffer) => {
      body += chunk.toString();
      if (body.length > MAX_BODY_CHARS) req.destroy(); // a history's payloads are far smaller
    });
    req.on('end', () => {
      void (async () => {
        try {
          const payloads = ((JSON.parse(body) as { payloads?: JsonPayload[] }).payloads ?? []).map(fromJson);
          const result = action === '/encode' ? await opts.codec.encode(payloads) : await opts.codec.decode(payloads);
          res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ payloads: result.map(toJson) }));
        } catch (err) {
          res.writeHead(400, { 'Content-Type': 'text/plain' }).end(err instanceof Error ? err.message : 'bad request');
        }
      })();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => resolve());
  });
  port = (server.address() as { port: number }).port; // the real one when 0 was asked for
  return server;
}
