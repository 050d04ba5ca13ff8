// Payload encryption on the real server: with LORAFLOW_PAYLOAD_KEY set, Temporal stores only
// ciphertext, the CLI and worker still read it, and the Web UI's codec endpoint decodes it for
// whoever holds the token.
import { randomBytes, randomUUID } from 'node:crypto';
import { request } from 'node:http';
import path from 'node:path';
import { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TrainRequest } from '../contract/pipeline.js';
import { AesGcmCodec } from '../lib/codec.js';
import { startCodecServer } from '../stack/codec-server.js';
import { makeDataset } from '../testkit/datasets.js';
import { freePort, type PipelineFixture, startPipelineFixture } from '../testkit/services.js';
import type { PublishingTrainLora } from '../workflows/index.js';

const codec = new AesGcmCodec(randomBytes(32));

describe('an encrypted pipeline', () => {
  let fixture: PipelineFixture;
  beforeAll(async () => {
    fixture = await startPipelineFixture('codec');
  });
  afterAll(() => fixture?.stop());

  it('stores only ciphertext in history, and the codec endpoint decodes it with the token', async () => {
    const dataConverter = { payloadCodecs: [codec] };
    const { env } = fixture;
    const client = new Client({ connection: env.connection, dataConverter });
    const dataset = await makeDataset(path.join(fixture.tmp.dir, 'ds'), { images: 2, captioned: 2 });
    const request = TrainRequest.parse({ name: 'secretname', dataset: { path: dataset, fingerprint: 'c'.repeat(64) }, training: { triggerWord: 'lfsecret', baseModel: 'tiny-sd', params: { steps: 3, seed: 10 } } });
    const { handle, published } = await fixture.withWorkers(
      async (taskQueue) => {
        const handle = await client.workflow.start<PublishingTrainLora>('trainLora', { taskQueue, workflowId: `enc-${randomUUID()}`, args: [request] });
        return { handle, published: await handle.result() };
      },
      { worker: { dataConverter } },
    );
    expect(published.uri).toContain('/loras/secretname/');

    const history = await env.client.workflow.getHandle(handle.workflowId).fetchHistory(); // no codec: what the server holds
    const started = history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!;
    expect(Buffer.from(started.metadata!.encoding!).toString()).toBe('binary/encrypted');
    // Search attributes (stage, LoRA name) stay readable by design: the server indexes them.
    const events = history.events!.filter((e) => !e.upsertWorkflowSearchAttributesEventAttributes);
    const stored = bytesIn(events).map((b) => Buffer.from(b).toString('latin1'));
    expect(stored.length).toBeGreaterThan(10);
    for (const plain of ['lfsecret', 'secretname']) expect(stored.filter((text) => text.includes(plain))).toEqual([]);
    // The same scan finds them where they are plaintext by design.
    expect(bytesIn(history.events!).some((b) => Buffer.from(b).toString('latin1').includes('secretname'))).toBe(true);

    const port = await freePort();
    const server = await startCodecServer({ codec, port, allowOrigin: 'http://127.0.0.1:8233', token: 'ui-token' });
    try {
      const body = JSON.stringify({
        payloads: [{ metadata: Object.fromEntries(Object.entries(started.metadata!).map(([k, v]) => [k, Buffer.from(v).toString('base64')])), data: Buffer.from(started.data!).toString('base64') }],
      });
      const denied = await fetch(`http://127.0.0.1:${port}/decode`, { method: 'POST', body });
      expect(denied.status).toBe(401);
      const decoded = await fetch(`http://127.0.0.1:${port}/decode`, { method: 'POST', body, headers: { Authorization: 'Bearer ui-token' } });
      expect(decoded.status).toBe(200);
      const payload = ((await decoded.json()) as { payloads: { data: string }[] }).payloads[0]!;
      expect(JSON.parse(Buffer.from(payload.data, 'base64').toString())).toMatchObject({ name: 'secretname', training: { triggerWord: 'lfsecret' } });
      const preflight = await fetch(`http://127.0.0.1:${port}/decode`, { method: 'OPTIONS', headers: { Origin: 'http://127.0.0.1:8233' } });
      expect(preflight.headers.get('access-control-allow-origin')).toBe('http://127.0.0.1:8233');
    } finally {
      server.close();
    }
  });
});

describe('the codec endpoint', () => {
  /** A raw request, so that Host and Origin can be anything a browser or an attacker sends. */
  const send = (port: number, headers: Record<string, string>, method = 'POST') =>
    new Promise<{ status: number; allowOrigin?: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/decode', method, headers }, (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, ...(res.headers['access-control-allow-origin'] ? { allowOrigin: String(res.headers['access-control-allow-origin']) } : {}) });
      });
      req.on('error', reject);
      req.end(method === 'POST' ? JSON.stringify({ payloads: [] }) : undefined);
    });

  it('answers only requests addressed to itself, grants CORS only to the UI origin, and checks the token', async () => {
    const port = await freePort();
    const ui = 'http://127.0.0.1:8233';
    const server = await startCodecServer({ codec, port, allowOrigin: ui, token: 'ui-token' });
    try {
      const auth = { authorization: 'Bearer ui-token' };
      expect(await send(port, { host: `127.0.0.1:${port}`, ...auth })).toEqual({ status: 200 });
      expect(await send(port, { host: `localhost:${port}`, origin: ui, ...auth })).toEqual({ status: 200, allowOrigin: ui });
      // A page on evil.example whose name was rebound to 127.0.0.1 sends its own Host.
      expect((await send(port, { host: `evil.example:${port}`, ...auth })).status).toBe(421);
      expect(await send(port, { host: `127.0.0.1:${port}`, origin: 'http://evil.example', ...auth })).toEqual({ status: 403 });
      expect(await send(port, { host: `127.0.0.1:${port}`, origin: 'http://evil.example' }, 'OPTIONS')).toEqual({ status: 403 });
      expect(await send(port, { host: `127.0.0.1:${port}`, origin: ui }, 'OPTIONS')).toEqual({ status: 204, allowOrigin: ui });
      for (const wrong of ['Bearer ui-tokem', 'Bearer ui-token-longer', 'Bearer ', 'ui-token']) expect((await send(port, { host: `127.0.0.1:${port}`, authorization: wrong })).status, wrong).toBe(401);
    } finally {
      server.close();
    }
  });
});

/** Every byte array (payload data and metadata) anywhere in `value`. */
function bytesIn(value: unknown, found: Uint8Array[] = []): Uint8Array[] {
  if (value instanceof Uint8Array) found.push(value);
  else if (value && typeof value === 'object') for (const v of Object.values(value)) bytesIn(v, found);
  return found;
}
