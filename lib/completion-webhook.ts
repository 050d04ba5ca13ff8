// RunPod's completion webhook, received by the worker: each GPU job is submitted with this
// process's webhook URL, and when the job ends RunPod POSTs its /status body there. The body is
// taken as a hint only (RunPod signs nothing): it names a job, and the endpoint's status poller
// asks that job's status next (StatusPoller.nudge) instead of at its turn, so an end nothing
// announced is seen in a request's time at any number of waiting jobs. A lost or forged webhook
// costs at most one status request; polling still sees every end.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';

/** What one worker process gives RunPod: its URL with a key of its own, and where it listens. */
export interface CompletionWebhook {
  /** The URL each /run names (LORAFLOW_RUNPOD_WEBHOOK_URL with `?key=`): a secret, never logged. */
  url: string;
  key: string;
  /** host:port the receiver binds (LORAFLOW_RUNPOD_WEBHOOK_LISTEN). */
  listen: string;
}

/** A webhook body larger than this is refused: a /status body of loraflow's jobs is a few KB. */
const MAX_BODY_BYTES = 1 << 20;

/** This process's webhook: a fresh key per process, so another process's jobs are told apart. */
export function completionWebhookFor(publicUrl: string, listen: string): CompletionWebhook {
  const key = randomBytes(18).toString('base64url');
  const url = new URL(publicUrl);
  url.searchParams.set('key', key);
  return { url: url.toString(), key, listen };
}

/** The job id a webhook body names, if it is one (RunPod's ids: letters, digits, dashes). */
export function jobIdOf(body: string): string | undefined {
  try {
    const id = (JSON.parse(body) as { id?: unknown }).id;
    return typeof id === 'string' && /^[\w-]{1,128}$/.test(id) ? id : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Serves the webhook on `hook.listen`, at the URL's path. 204 for a body naming a job (whether
 * or not a stage here waits on it: another answer would only make RunPod retry), 403 for a wrong
 * key, 400 for a body that names none. Resolves once listening; `port` is the one bound.
 */
export async function serveCompletionWebhook(hook: CompletionWebhook, nudge: (jobId: string) => boolean): Promise<{ server: Server; port: number; close: () => Promise<void> }> {
  const url = new URL(hook.url);
  const expected = Buffer.from(hook.key);
  const server = createServer((req, res) => {
    const asked = new URL(req.url ?? '/', 'http://webhook');
    if (req.method !== 'POST' || asked.pathname !== url.pathname) return void res.writeHead(404).end();
    const key = Buffer.from(asked.searchParams.get('key') ?? '');
    if (key.length !== expected.length || !timingSafeEqual(key, expected)) return void res.writeHead(403).end();
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        res.writeHead(413).end();
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on('end', () => {
      if (res.headersSent) return;
      const id = jobIdOf(Buffer.concat(chunks).toString('utf8'));
      if (!id) return void res.writeHead(400).end();
      nudge(id);
      res.writeHead(204).end();
    });
  });
  const [host, port] = splitHostPort(hook.listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => (server.off('error', reject), resolve()));
  });
  const bound = server.address();
  return {
    server,
    port: typeof bound === 'object' && bound ? bound.port : port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** "0.0.0.0:8790", "[::]:8790", ":8790" (every address). */
export function splitHostPort(listen: string): [string | undefined, number] {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(listen.trim());
  if (!m) throw new Error(`not host:port: ${listen}`);
  return [m[1] ?? (m[2] || undefined), Number(m[3])];
}
