// A fault proxy in front of the stack's S3 server, for the chaos suite: it passes requests through,
// refuses connections, black-holes them (accepts, never answers, as a store that hangs does), or
// loses the answer to write-once claim PUTs after the store applied them. Everything that talks
// to S3 (the worker, the CLI, the GPU workers' presigned URLs) goes through it.
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export type S3ProxyMode = 'pass' | 'refuse' | 'blackhole';

export interface S3Proxy {
  url: string;
  mode(): S3ProxyMode;
  setMode(mode: S3ProxyMode): void;
  /** The next `n` answers to a claim PUT (…/claim.json) are lost after the store applied the write. */
  loseClaimReplies(n: number): void;
  /** What was done to requests so far. */
  counts: { passed: number; refused: number; blackholed: number; claimRepliesLost: number };
  stop(): Promise<void>;
}

/** `ignoreConditionalWrites`: answer a refused conditional PUT (412) as a success, the way a store
 * without conditional writes (Google Cloud Storage's XML API) overwrites. */
export async function startS3Proxy(opts: { port: number; upstream: string; ignoreConditionalWrites?: boolean }): Promise<S3Proxy> {
  const upstream = new URL(opts.upstream);
  let mode: S3ProxyMode = 'pass';
  let claimRepliesToLose = 0;
  const held = new Set<ServerResponse>();
  const sockets = new Set<Socket>();
  const counts = { passed: 0, refused: 0, blackholed: 0, claimRepliesLost: 0 };

  const forward = (req: IncomingMessage, res: ServerResponse) => {
    const losing = req.method === 'PUT' && /\/claim\.json(\?|$)/.test(req.url ?? '') && claimRepliesToLose > 0;
    if (losing) claimRepliesToLose--;
    const out = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      if (losing) {
        answer.resume();
        counts.claimRepliesLost++;
        res.socket?.destroy(); // applied by the store, never heard by the client
        return;
      }
      if (opts.ignoreConditionalWrites && req.method === 'PUT' && req.headers['if-none-match'] === '*' && answer.statusCode === 412) {
        answer.resume();
        res.writeHead(200, { etag: '"overwritten"', 'content-length': '0' }).end();
        return;
      }
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    out.on('error', () => res.socket?.destroy());
    req.pipe(out);
    counts.passed++;
  };

  const server: Server = createServer((req, res) => {
    if (mode === 'refuse') {
      counts.refused++;
      req.socket.destroy();
    } else if (mode === 'blackhole') {
      counts.blackholed++;
      req.resume();
      held.add(res);
    } else {
      forward(req, res);
    }
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    if (mode === 'refuse') socket.destroy();
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => resolve());
  });

  return {
    url: `http://127.0.0.1:${opts.port}`,
    counts,
    mode: () => mode,
    setMode(next) {
      mode = next;
      if (next !== 'blackhole') {
        // The held requests' clients would wait out their timeouts: let them see the failure now.
        for (const res of held) res.socket?.destroy();
        held.clear();
      }
      if (next !== 'pass') for (const socket of sockets) if (next === 'refuse') socket.destroy();
    },
    loseClaimReplies(n) {
      claimRepliesToLose = n;
    },
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
