// `loraflow serve` on the embedded stack (real Temporal, versitygw, the local RunPod endpoint
// running the scripted GPU handler, the Temporal worker process): the REST API end to end (upload →
// create → events → published → the download URL's bytes), bad tokens on every route, bad bodies
// naming the field, idempotent create, cancel; signed webhooks of a training (its receiver down a
// while) and of a schedule's triggered run; then the RunPod-shaped gateway driven by the official
// `runpod` Python client (seed 000) and `runpod-sdk` (seed 004), and statuses asked of a separate
// `loraflow serve` process after the stack's own server is gone.
import { execFile, spawn } from 'node:child_process';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import runpodSdk from 'runpod-sdk';
import { Webhook } from 'standardwebhooks';
import yazl from 'yazl';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTokenHashes, tokenHash } from '../api/auth.js';
import { connect } from '../cli/connect.js';
import { describeLogs } from '../cli/logs.js';
import { sha256 } from '../lib/hash.js';
import { repoRoot, toolchain } from '../lib/toolchain.js';
import { type Stack, startStack } from '../stack/index.js';
import { makeDataset } from '../testkit/datasets.js';
import { freePort, stackEnv, tempDir } from '../testkit/services.js';
import { recordHistory } from '../testkit/histories.js';
import { readEvents } from '../testkit/sse.js';
import { uploadDir } from '../testkit/uploads.js';
import { webhookReceiver } from '../testkit/webhook-receiver.js';
import { until } from '../testkit/wait.js';

const TOKEN = 'api-test-token-5c1e';
const WEBHOOK_SECRET = `whsec_${Buffer.from('loraflow api test webhook secret!').toString('base64')}`;
let tmp: ReturnType<typeof tempDir>;
let stack: Stack;
let dataset: string;
let images: Server;
let imagesUrl: string;

beforeAll(async () => {
  tmp = tempDir('api');
  const env = {
    ...(await stackEnv(tmp.dir)),
    LORAFLOW_POLL_MS: '200',
    LORAFLOW_STATUS_WAIT_MS: '0',
    LORAFLOW_CAPTIONER: 'scripted', // the scripted handler answers caption jobs as this captioner
    LORAFLOW_ALLOW_PRIVATE_URLS: 'true', // seed 000's image URLs are served from loopback below
    LORAFLOW_API_TOKENS: `${tokenHash('another-token')},${tokenHash(TOKEN)}`,
    LORAFLOW_WEBHOOK_SECRET: WEBHOOK_SECRET,
    LORAFLOW_WEBHOOK_PROGRESS_SECONDS: '1',
  };
  stack = await startStack({ env, gpuWorkerCommand: [toolchain.python(), '-u', path.join(repoRoot, 'test/fixtures/scripted_gpu_handler.py')] });
  dataset = await makeDataset(path.join(tmp.dir, 'dataset'), { images: 3, captioned: 3, size: 32 });
  // Seed 000's clients send image URLs: a plain file server on loopback.
  images = createServer((req, res) => {
    readFile(path.join(dataset, path.basename(req.url ?? ''))).then((b) => res.end(b), () => ((res.statusCode = 404), res.end()));
  });
  await new Promise<void>((r) => images.listen(0, '127.0.0.1', r));
  imagesUrl = `http://127.0.0.1:${(images.address() as { port: number }).port}`;
}, 180_000);

afterAll(async () => {
  images?.close();
  await stack?.stop();
  if (!process.env.KEEP_TMP) tmp?.remove();
});

const api = (route: string, init: RequestInit & { token?: string | null } = {}) => {
  const { token = TOKEN, ...rest } = init;
  return fetch(`${stack.api.url}${route}`, {
    ...rest,
    headers: { 'content-type': 'application/json', ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...(rest.headers as Record<string, string>) },
  });
};
const post = (route: string, body: unknown, headers: Record<string, string> = {}) => api(route, { method: 'POST', body: JSON.stringify(body), headers });
const json = async <T = any>(res: Response | Promise<Response>) => (await (await res).json()) as T;

/** Uploads the dataset's files through presigned PUTs; returns the upload id. */
const upload = () => uploadDir(post, dataset, TOKEN);

/** The run's server-sent events until `end`. */
const events = async (id: string) => {
  const res = await api(`/v1/trainings/${id}/events`, { signal: AbortSignal.timeout(180_000) });
  expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
  return readEvents(res, 'end');
};

describe('the HTTP API', () => {
  it('refuses every route in its OpenAPI document without a good token, and serves the committed document', async () => {
    const doc = await json(api('/openapi.json'));
    expect(doc).toEqual(JSON.parse(await readFile(path.join(repoRoot, 'api/openapi.json'), 'utf8')));
    const routes = Object.entries(doc.paths as Record<string, object>).flatMap(([p, ops]) => Object.keys(ops).map((m) => [m.toUpperCase(), p.replace(/\{[^}]+\}/g, 'x')] as const));
    expect(routes.length).toBeGreaterThanOrEqual(13);
    for (const [method, route] of [...routes, ['GET', '/openapi.json'] as const]) {
      for (const token of [null, 'wrong-token', '', tokenHash(TOKEN)]) {
        const res = await api(route, { method, token, ...(method === 'POST' ? { body: '{}' } : {}) });
        expect(res.status, `${method} ${route} with ${token}`).toBe(401);
        expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
      }
    }
    // RunPod's Python client sends "Bearer <key>", older clients the bare key: both are read.
    expect((await api('/v2/any/health', { headers: { authorization: TOKEN }, token: null })).status).toBe(200);
    expect(() => parseTokenHashes('')).toThrow(/LORAFLOW_API_TOKENS/);
  });

  it('names the bad field of a bad body, and caps the body size', async () => {
    const bad = async (body: unknown, field: string, status = 400) => {
      const res = await post('/v1/trainings', body);
      const err = await json<{ error: { field?: string; message: string } }>(res);
      expect([res.status, err.error.field], err.error.message).toEqual([status, field]);
      return err.error.message;
    };
    const training = { triggerWord: 'lfsq', params: { steps: 5 } };
    await bad({}, 'name');
    expect(await bad({ name: 'Bad_Name', images: 'https://example.com/a.zip', training }, 'name')).toMatch(/^name: lowercase/);
    await bad({ name: 'ok', images: 'https://example.com/a.zip', training: { ...training, params: { steps: -1 } } }, 'training.params.steps');
    await bad({ name: 'ok', images: '/etc', training }, 'images');
    await bad({ name: 'ok', training }, 'images');
    await bad({ name: 'ok', images: 'https://example.com/a.zip', training, webhook: { url: 'ftp://example.com/hook' } }, 'webhook.url');
    await bad({ name: 'ok', images: 'https://example.com/a.zip', training, webhook: { url: 'https://example.com/hook', events: ['training.exploded'] } }, 'webhook.events.0');
    await bad({ name: 'ok', upload: 'up-nope', training }, 'upload');
    await bad({ name: 'ok', upload: `up-${'0'.repeat(32)}`, training }, 'upload'); // nothing uploaded there
    const notJson = await api('/v1/trainings', { method: 'POST', body: '{"name":' });
    expect([notJson.status, (await json(notJson)).error.field]).toEqual([400, 'body']);
    expect((await post('/v1/uploads', { files: [{ name: '../x.png' }] })).status).toBe(400);
    expect((await api('/v1/trainings/a%2Fb')).status).toBe(400);
    // On a connection of its own: the server answers 413 without reading the rest, and closes it.
    const huge = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${stack.api.url}/v1/trainings`, { method: 'POST', agent: false, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      req.end(JSON.stringify({ name: 'x'.repeat(2 * 2 ** 20) }));
    });
    expect(huge).toBe(413);
    expect((await api('/v1/trainings?stage=nope')).status).toBe(400);
  });

  it('uploads, trains, streams progress, publishes, and hands out a download URL whose bytes are the LoRA; the same request is the same run', async () => {
    const uploadId = await upload();
    const body = { name: 'api-squares', upload: uploadId, training: { triggerWord: 'lfsq', params: { steps: 8, seed: 150 } } };
    const created = await post('/v1/trainings', body);
    expect(created.status).toBe(201);
    const { id, attached } = await json<{ id: string; attached: boolean }>(created);
    expect(attached).toBe(false);
    // The same request again: the CLI's identity, the same run.
    const again = await post('/v1/trainings', body);
    expect([again.status, (await json(again)).id]).toEqual([200, id]);
    // An Idempotency-Key names its own run, and keeps naming it whatever the body says.
    const keyed = await json(post('/v1/trainings', body, { 'Idempotency-Key': 'order-7781' }));
    expect(keyed.id).not.toBe(id);
    const keyedAgain = await post('/v1/trainings', { ...body, training: { ...body.training, params: { steps: 9 } } }, { 'Idempotency-Key': 'order-7781' });
    expect([keyedAgain.status, (await json(keyedAgain)).id]).toEqual([200, keyed.id]);

    const seen = await events(id);
    const stages = [...new Set(seen.filter((e) => e.event === 'progress').map((e) => e.data.stage))];
    expect(stages).toContain('train');
    expect(stages.at(-1)).toBe('published');
    expect(seen.some((e) => e.data.step !== undefined)).toBe(true);
    expect(seen.at(-1)).toMatchObject({ event: 'end', data: { status: 'COMPLETED', stage: 'published' } });
    // One event per change: no two identical progress events in a row.
    const progress = seen.filter((e) => e.event === 'progress').map((e) => JSON.stringify(e.data));
    expect(progress.filter((p, i) => p === progress[i - 1])).toEqual([]);

    expect(await json(api(`/v1/trainings/${id}`))).toMatchObject({ workflowId: id, status: 'COMPLETED', stage: 'published', result: { sha256: expect.any(String) } });
    const listed = await json(api('/v1/trainings?name=api-squares'));
    expect(listed.trainings.map((t: { workflowId: string }) => t.workflowId)).toContain(id);
    expect((await json(api('/v1/trainings?name=api-squares&stage=failed'))).trainings).toEqual([]);

    const dl = await json(api(`/v1/trainings/${id}/download`));
    const lora = dl.files.find((f: { name: string }) => f.name === 'lora.safetensors');
    const bytes = Buffer.from(await (await fetch(lora.url)).arrayBuffer());
    expect(sha256(bytes)).toBe(dl.sha256);
    const logs = await json(api(`/v1/trainings/${id}/logs`));
    expect(logs.jobs.some((j: { stage: string; status: string }) => j.stage === 'train' && j.status === 'COMPLETED')).toBe(true);
    const report = await json(api(`/v1/trainings/${id}/report`));
    const index = report.files.find((f: { name: string }) => f.name === 'index.html');
    expect(await (await fetch(index.url)).text()).toContain('api-squares');
    // The keyed run is a second, separate training of the same data.
    await until(async () => (await json(api(`/v1/trainings/${keyed.id}`))).status, (s) => s !== 'RUNNING', 120_000, 500);
  }, 240_000);

  it('trains on an uploaded .zip like on its images', async () => {
    const zip = new yazl.ZipFile();
    for (const name of await readdir(dataset)) zip.addBuffer(await readFile(path.join(dataset, name)), `photos/${name}`);
    zip.end();
    const chunks: Buffer[] = [];
    for await (const chunk of zip.outputStream as AsyncIterable<Buffer>) chunks.push(chunk);
    const bytes = Buffer.concat(chunks);
    const up = await json(post('/v1/uploads', { files: [{ name: 'photos.zip', contentType: 'application/zip' }] }));
    expect((await fetch(up.files[0].url, { method: 'PUT', body: bytes, headers: up.files[0].headers })).status).toBe(200);
    const { id } = await json(post('/v1/trainings', { name: 'api-zipped', upload: up.uploadId, training: { triggerWord: 'lfsq', params: { steps: 4 } } }));
    const done = await until(async () => json(api(`/v1/trainings/${id}`)), (s) => s.status !== 'RUNNING', 120_000, 500);
    expect(done).toMatchObject({ status: 'COMPLETED', stage: 'published' });
  }, 180_000);

  it('lists published LoRAs and their versions, with URLs of their files', async () => {
    const loras = await json(api('/v1/loras'));
    expect(loras.loras.map((l: { name: string }) => l.name)).toContain('api-squares');
    const { versions } = await json(api('/v1/loras/api-squares/versions'));
    expect(versions.length).toBeGreaterThanOrEqual(1);
    const file = versions[0].files.find((f: { name: string }) => f.name === 'lora.safetensors');
    expect(sha256(Buffer.from(await (await fetch(file.url)).arrayBuffer()))).toBe(versions[0].sha256);
    expect((await api('/v1/loras/no-such-lora/versions')).status).toBe(404);
    expect((await json(api('/v1/loras/Bad_Name/versions'))).error.field).toBe('name');
  });

  it('creates, lists, pauses, unpauses, triggers and deletes a schedule', async () => {
    const body = { name: 'api-nightly', upload: await upload(), training: { triggerWord: 'lfsq', params: { steps: 5 } }, cron: '0 3 * * *' };
    expect((await json(post('/v1/schedules', { ...body, cron: 'whenever' }))).error.message).toMatch(/^cron: /);
    const created = await post('/v1/schedules', body);
    expect(created.status).toBe(201);
    const { scheduleId } = await json(created);
    expect(scheduleId).toBe('retrain-api-nightly');
    expect((await post('/v1/schedules', body)).status).toBe(409);
    const row = async () => ((await json(api('/v1/schedules'))).schedules as { scheduleId: string; state: string }[]).find((s) => s.scheduleId === scheduleId);
    expect(await until(row, Boolean, 20_000, 300)).toMatchObject({ state: 'active', cron: '0 3 * * *' });
    expect(await json(post(`/v1/schedules/${scheduleId}/pause`, {}))).toEqual({ scheduleId, done: 'paused' });
    expect((await row())?.state).toBe('paused');
    expect(await json(post(`/v1/schedules/${scheduleId}/unpause`, {}))).toEqual({ scheduleId, done: 'active' });
    expect(await json(post(`/v1/schedules/${scheduleId}/trigger`, {}))).toEqual({ scheduleId, done: 'triggered' });
    expect(await json(api(`/v1/schedules/${scheduleId}`, { method: 'DELETE' }))).toEqual({ scheduleId, done: 'deleted' });
    expect((await post(`/v1/schedules/${scheduleId}/pause`, {})).status).toBe(404);
  });

  it('cancels a training and its GPU job', async () => {
    const uploadId = await upload();
    const { id } = await json(post('/v1/trainings', { name: 'api-cancel', upload: uploadId, training: { triggerWord: 'lfsq', params: { steps: 500, seed: 300 } } }));
    await until(async () => (await json(api(`/v1/trainings/${id}`))).step ?? 0, (s) => s >= 1, 120_000, 300);
    const res = await post(`/v1/trainings/${id}/cancel`, {});
    expect(await json(res)).toEqual({ id, status: 'CANCELLED' });
    const conflict = await api(`/v1/trainings/${id}/download`);
    expect(conflict.status).toBe(409);
    expect((await api('/v1/trainings/no-such-run')).status).toBe(404);
  }, 180_000);
});

describe('webhooks', () => {
  it('a receiver down while the run trains gets every event later, in order, each verified with the Standard Webhooks library; deliveries show in logs', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/hooks?token=receiver-secret-in-url`;
    const created = await json(post('/v1/trainings', { name: 'api-hooks', upload: await upload(), training: { triggerWord: 'lfsq', params: { steps: 8, seed: 400 } }, webhook: { url } }));
    expect(created.webhooks).toBe(`webhooks-${created.id}`);
    // Nothing listens on the port while the run trains and publishes: every attempt is refused.
    await until(async () => (await json(api(`/v1/trainings/${created.id}`))).status, (st) => st === 'COMPLETED', 120_000, 500);
    const down = await until(async () => ((await json(api(`/v1/trainings/${created.id}/logs`))).webhooks ?? []) as any[], (w) => w[0]?.attempts >= 3, 60_000, 500);
    expect(down).toHaveLength(1); // the next event waits for the first: order is kept
    expect(down[0]).toMatchObject({ seq: 1, type: 'training.started', delivered: false, lastError: expect.stringMatching(/ECONNREFUSED/) });

    // Back up: a receiver that verifies every request with the Standard Webhooks library.
    const receiver = await webhookReceiver(port, WEBHOOK_SECRET);
    const { received } = receiver;
    try {
      await until(() => received.at(-1)?.type, (t) => t === 'training.published', 90_000, 200);
      expect(receiver.forged()).toBe(0);
      const types = received.map((r) => r.type);
      expect(types[0]).toBe('training.started');
      expect(types).toContain('training.stage_changed');
      expect(types.filter((t) => t === 'training.published')).toHaveLength(1);
      expect(received.filter((r) => r.type === 'training.stage_changed').map((r) => r.data.stage)).toEqual(expect.arrayContaining(['train', 'publish']));
      // In order, each once: ids end in 1, 2, 3, … (a filtered event would leave a gap, none is filtered here).
      expect(received.map((r) => Number(r.id.split('_').at(-1)))).toEqual(received.map((_, i) => i + 1));
      const logs = await json(api(`/v1/trainings/${created.id}/logs`));
      expect(logs.webhooks.map((w: { delivered: boolean }) => w.delivered)).toEqual(received.map(() => true));
      expect(logs.webhooks[0].attempts).toBeGreaterThanOrEqual(4);
      // `loraflow logs` prints the same deliveries.
      expect(describeLogs(logs)).toMatch(/^  webhook #1 training\.started: delivered after \d+ attempts \(last .*: HTTP 204\)$/m);
      // A wrong secret does not verify: the receiver's check is real.
      const last = received.at(-1)!;
      expect(() => new Webhook(`whsec_${Buffer.from('another secret, another sender!!').toString('base64')}`).verify(JSON.stringify(last), { 'webhook-id': last.id, 'webhook-timestamp': String(Math.floor(Date.now() / 1000)), 'webhook-signature': 'v1,AAAA' })).toThrow();
      // The receiver's URL (and its token) is in no workflow history.
      const client = await connect(stack.config);
      const delivery = client.workflow.getHandle(created.webhooks);
      expect(await delivery.result()).toEqual({ delivered: received.length });
      await recordHistory(delivery, 'webhooks-delivered');
      for (const id of [created.id, created.webhooks]) expect(JSON.stringify(await client.workflow.getHandle(id).fetchHistory())).not.toContain('receiver-secret-in-url');
      await client.connection.close();
    } finally {
      receiver.close();
    }
  }, 300_000);

  it("a schedule's webhook: a triggered run's events reach the receiver in order, verified with the Standard Webhooks library, until the schedule is deleted", async () => {
    const port = await freePort();
    const [receiver, client] = [await webhookReceiver(port, WEBHOOK_SECRET), await connect(stack.config)];
    const { received } = receiver;
    try {
      const body = { name: 'api-sched-hooks', upload: await upload(), training: { triggerWord: 'lfsq', params: { steps: 6, seed: 500 } }, cron: '0 3 1 1 *' }; // far off: the only run is the triggered one
      expect((await json(post('/v1/schedules', { ...body, webhook: { url: 'ftp://example.com/hook' } }))).error.field).toBe('webhook.url');
      const created = await post('/v1/schedules', { ...body, webhook: { url: `http://127.0.0.1:${port}/hooks?token=schedule-secret-in-url` } });
      const { scheduleId, webhooks } = await json(created);
      expect([created.status, webhooks]).toEqual([201, `schedule-webhooks-${scheduleId}`]);
      await post(`/v1/schedules/${scheduleId}/trigger`, {});
      await until(() => received.at(-1)?.type, (t) => t === 'training.published', 150_000, 200);
      const runId = received[0]!.data.trainingId as string; // the schedule's run, not an API training:
      expect([runId.startsWith(`${scheduleId}-`), received[0]!.type, receiver.forged()]).toEqual([true, 'training.started', 0]);
      expect(received.filter((r) => r.type === 'training.stage_changed').map((r) => r.data.stage)).toEqual(expect.arrayContaining(['train', 'publish']));
      expect(received.map((r) => r.id)).toEqual(received.map((_, i) => `msg_${runId}_${i + 1}`));
      expect((await json(api(`/v1/trainings/${runId}/logs`))).webhooks).toHaveLength(received.length);
      await api(`/v1/schedules/${scheduleId}`, { method: 'DELETE' }); // the watcher ends, having handed over the one run
      const watcher = client.workflow.getHandle(webhooks);
      expect(await watcher.result()).toEqual({ runs: 1 });
      await recordHistory(watcher, 'schedule-webhooks'); // and no history holds the URL:
      for (const id of [runId, `webhooks-${runId}`, webhooks]) expect(JSON.stringify(await client.workflow.getHandle(id).fetchHistory())).not.toContain('schedule-secret-in-url');
    } finally {
      receiver.close();
      await client.connection.close();
    }
  }, 300_000);
});

describe('the RunPod-shaped gateway', () => {
  const runPython = async (scenario: string, arg: string, base = `${stack.api.url}/v2`) => {
    const { stdout } = await promisify(execFile)(toolchain.python(), [path.join(repoRoot, 'test/fixtures/gateway_python_client.py'), 'fluxgym', scenario, arg], {
      env: { ...process.env, RUNPOD_ENDPOINT_BASE_URL: base, RUNPOD_API_KEY: TOKEN },
      timeout: 280_000,
    });
    return JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, any>;
  };

  it('seed 000 through the official Python client: image URLs in, lora_files and public_urls out; a separate loraflow serve process answers the same statuses', async () => {
    const names = (await readdir(dataset)).filter((f) => f.endsWith('.png')).sort();
    const input = { character_name: 'my_character', images: names.map((n) => `${imagesUrl}/${n}`), trigger_word: 'lfchar', steps: 6 };
    const out = await runPython('run', JSON.stringify(input));
    expect(out.base).toBe(`${stack.api.url}/v2`);
    expect(out.status).toBe('COMPLETED');
    expect(out.output).toMatchObject({ status: 'success', lora_files: [expect.stringMatching(/^my-character-.+\.safetensors$/)], public_urls: [expect.stringMatching(/^http/)] });
    const bytes = Buffer.from(await (await fetch(out.output.public_urls[0])).arrayBuffer());
    expect(sha256(bytes)).toBe(out.output.sha256);

    // Refused like any dataset URL: a file: URL, and (with private URLs off) loopback, named by index.
    const refused = await runPython('run', JSON.stringify({ ...input, images: ['file:///etc/passwd'] }));
    expect(refused.status).toBe('FAILED');

    // A job answered at once (seed 004's health) is kept in S3, not in the server's memory.
    const instant = await json(post('/v2/rp/run', { input: { type: 'health' } }));

    // The server that answered is gone; `loraflow serve`, a process of its own, knows both jobs.
    await stack.api.stop();
    const serve = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'client.ts'), 'serve', '--port', String(await freePort()), '--json'], { env: stack.env, cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
    stack.api.stop = async () => {
      serve.kill('SIGTERM');
      await new Promise((r) => (serve.exitCode !== null ? r(undefined) : serve.once('exit', r)));
    };
    const line = await new Promise<string>((resolve, reject) => {
      serve.stdout!.once('data', (d: Buffer) => resolve(d.toString()));
      serve.once('exit', (code) => reject(new Error(`loraflow serve exited ${code}`)));
    });
    stack.api.url = (JSON.parse(line) as { url: string }).url; // the rest of the file talks to the new server
    const after = await runPython('status', out.id, `${stack.api.url}/v2`);
    expect(after.job).toMatchObject({ id: out.id, status: 'COMPLETED', output: { sha256: out.output.sha256, lora_files: out.output.lora_files } });
    expect((await runPython('status', instant.id, `${stack.api.url}/v2`)).job).toMatchObject({ id: instant.id, status: 'COMPLETED', output: { status: 'healthy' } });
  }, 300_000);

  it('seed 004 through runpod-sdk: upload_training_data, train_with_yaml, process_status, list_models, download, and refusals', async () => {
    const endpoint = runpodSdk(TOKEN, { baseUrl: `${stack.api.url}/v2` }).endpoint('rp-handler')!;
    const sync = async (input: Record<string, unknown>) => (await endpoint.runSync({ input }, 30_000)) as { id: string; status: string; output?: any; error?: string };
    expect(await sync({ type: 'health' })).toMatchObject({ status: 'COMPLETED', output: { status: 'healthy' } });

    const files = await Promise.all((await readdir(dataset)).map(async (filename) => ({ filename, content: (await readFile(path.join(dataset, filename))).toString('base64') })));
    expect(await sync({ type: 'upload_training_data', training_name: 'matt', files })).toMatchObject({ status: 'COMPLETED', output: { total_images: 3, total_captions: 3 } });

    const yaml = `job: extension
config:
  name: matt_lora
  process:
    - type: sd_trainer
      device: cuda:0
      trigger_word: m4tt
      network: {type: lora, linear: 4, linear_alpha: 4}
      datasets:
        - folder_path: /workspace/training_data/matt
          resolution: [32]
      train: {batch_size: 1, steps: 6, lr: 1e-4, optimizer: adamw8bit}
      model: {name_or_path: black-forest-labs/FLUX.1-dev}
`;
    const { id } = await endpoint.run({ input: { type: 'train_with_yaml', yaml_config: yaml } });
    const started = await until(() => endpoint.status(id) as Promise<{ status: string; output?: any }>, (s) => s.status === 'COMPLETED', 20_000);
    expect(started.output.ignored_keys).toEqual(['job', 'config.process.0.device', 'config.process.0.train.optimizer', 'config.process.0.model.name_or_path']);
    const processId = started.output.process_id as string;
    const done = await until(async () => (await sync({ type: 'process_status', process_id: processId })).output, (o) => o?.status === 'completed' || o?.status === 'failed', 180_000, 1000);
    expect(done.status).toBe('completed');

    const models = (await sync({ type: 'list_models' })).output.models as { name: string; file_path: string }[];
    const matt = models.find((m) => m.name === 'matt-lora')!;
    const file = await sync({ type: 'download_file', file_path: matt.file_path });
    const dl = await sync({ type: 'download', process_id: processId });
    expect(Buffer.from(file.output.content, 'base64').equals(Buffer.from(await (await fetch(dl.output.url)).arrayBuffer()))).toBe(true);

    expect(await sync({ type: 'download_file', file_path: '/workspace/../etc/passwd' })).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/^input\.file_path: only loras\//) });
    expect(await sync({ type: 'generate', prompt: 'a cat' })).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/not supported here/) });
    expect(await sync({ type: 'cancel', process_id: 'no-such-process' })).toMatchObject({ status: 'FAILED', error: 'no running pipeline with id no-such-process' });
    expect(await sync({ type: 'teleport' })).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/^input\.type: expected one of/) });
    expect((await sync({ type: 'processes' })).output.processes.map((p: { process_id: string }) => p.process_id)).toContain(processId);
    const health = (await endpoint.health()) as { jobs: { completed: number } };
    expect(health.jobs.completed).toBeGreaterThanOrEqual(3);
  }, 240_000);
});
