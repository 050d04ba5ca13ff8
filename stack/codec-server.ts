// The codec endpoint of Temporal's Web UI (`--ui-codec-endpoint`): POST /encode and /decode with
// payloads in proto JSON. It answers only the UI's origin, and with LORAFLOW_CODEC_TOKEN set
// only requests that carry it as a bearer token.
import { type Server, createServer } from 'node:http';
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

export async function startCodecServer(opts: { codec: PayloadCodec; port: number; allowOrigin: string; token?: string }): Promise<Server> {
  const server = createServer((req, res) => {
    res.setHeader('Access-Control-Allow-Origin', opts.allowOrigin);
    res.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
    res.setHeader('Access-Control-Allow-Headers', 'Content-Type, Authorization, X-Namespace');
    res.setHeader('Access-Control-Allow-Credentials', 'true');
    if (req.method === 'OPTIONS') return void res.writeHead(204).end();
    if (opts.token && req.headers.authorization !== `Bearer ${opts.token}`) return void res.writeHead(401).end();
    const action = req.method === 'POST' ? req.url?.replace(/\/+$/, '') : undefined;
    if (action !== '/encode' && action !== '/decode') return void res.writeHead(404).end();
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
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
  return server;
}
