// The worker's receiver of RunPod's completion webhooks (lib/completion-webhook.ts) over real
// HTTP: only this process's key, path and a body naming a job reach the poller.
import { afterEach, describe, expect, it } from 'vitest';
import { completionWebhookFor, jobIdOf, serveCompletionWebhook, splitHostPort } from '../../lib/completion-webhook.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c()));
});

async function serve() {
  const nudged: string[] = [];
  const hook = completionWebhookFor('http://127.0.0.1/runpod-webhook?team=a', '127.0.0.1:0');
  const { port, close } = await serveCompletionWebhook(hook, (id) => (nudged.push(id), true));
  closers.push(close);
  const at = (url: string) => url.replace('127.0.0.1/', `127.0.0.1:${port}/`);
  const post = (url: string, body: string) => fetch(at(url), { method: 'POST', headers: { 'content-type': 'application/json' }, body }).then((r) => r.status);
  return { hook, nudged, post };
}

describe('completion webhook', () => {
  it('hands the job a body names to the poller, for the right key and path only', async () => {
    const { hook, nudged, post } = await serve();
    expect(hook.url).toContain('team=a');
    expect(await post(hook.url, JSON.stringify({ id: 'abc-123-u1', status: 'COMPLETED', output: { ok: true } }))).toBe(204);
    expect(nudged).toEqual(['abc-123-u1']);
    const wrongKey = new URL(hook.url);
    wrongKey.searchParams.set('key', 'x'.repeat(hook.key.length));
    expect(await post(wrongKey.toString(), JSON.stringify({ id: 'forged' }))).toBe(403);
    wrongKey.searchParams.delete('key');
    expect(await post(wrongKey.toString(), JSON.stringify({ id: 'forged' }))).toBe(403);
    expect(await post(hook.url.replace('/runpod-webhook', '/other'), JSON.stringify({ id: 'forged' }))).toBe(404);
    expect(await post(hook.url, 'not json')).toBe(400);
    expect(await post(hook.url, JSON.stringify({ id: '../../etc' }))).toBe(400);
    // Refused past 1 MB: a 413, or the connection closed before the whole body was sent.
    expect([413, 'reset']).toContain(await post(hook.url, JSON.stringify({ id: 'big', output: 'x'.repeat(2 << 20) })).catch(() => 'reset'));
    expect(nudged).toEqual(['abc-123-u1']);
  });

  it('gives each process a key of its own, and reads listen addresses', () => {
    const a = completionWebhookFor('https://w.example.com/hook', ':8790');
    const b = completionWebhookFor('https://w.example.com/hook', ':8790');
    expect(a.key).not.toBe(b.key);
    expect(new URL(a.url).searchParams.get('key')).toBe(a.key);
    expect(jobIdOf(JSON.stringify({ id: 42 }))).toBeUndefined();
    expect(splitHostPort('0.0.0.0:8790')).toEqual(['0.0.0.0', 8790]);
    expect(splitHostPort('[::]:8790')).toEqual(['::', 8790]);
    expect(splitHostPort(':8790')).toEqual([undefined, 8790]);
    expect(() => splitHostPort('8790')).toThrow(/host:port/);
  });
});
