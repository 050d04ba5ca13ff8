// A protocol-level stand-in for the few Hugging Face Hub endpoints @huggingface/hub 2.17.5 calls
// to create a repo and commit to it, written from the library's source (lib/commit.ts,
// create-repo.ts, repo-exists.ts, list-commits.ts, list-files.ts, who-am-i.ts, file-download-info.ts). It is NOT the Hub:
// it records every request and keeps repos in memory so tests can assert on what the library sent.
// LFS batch answers offer only the "basic" transfer (a PUT to a URL on this server), so the Xet
// upload path the real Hub may choose is not exercised here.
import { createHash, randomBytes } from 'node:crypto';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  authorization?: string;
  contentType?: string;
  body: Buffer;
}

export interface HubCommit {
  oid: string;
  title: string;
  description?: string;
  parentCommit?: string;
  /** The commit's NDJSON lines as the library sent them. */
  lines: { key: string; value: Record<string, unknown> }[];
}

interface HubFile {
  bytes: Buffer;
  lfs: boolean;
}

export interface HubRepo {
  id: string;
  visibility?: string;
  commits: HubCommit[]; // oldest first
  files: Map<string, HubFile>;
}

export interface HubRecorderOptions {
  token: string;
  /** What whoami-v2 answers. */
  username?: string;
  /** Answer every authenticated request with this status (e.g. 401). */
  failWith?: number;
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const oid = () => randomBytes(20).toString('hex');

export async function startHubRecorder(options: HubRecorderOptions) {
  const requests: RecordedRequest[] = [];
  const unhandled: string[] = [];
  const repos = new Map<string, HubRepo>();
  /** LFS objects by sha256, as PUT to the upload URLs. */
  const lfs = new Map<string, Buffer>();
  let base = '';

  const authorized = (req: IncomingMessage, res: ServerResponse) => {
    if (options.failWith) {
      json(res, options.failWith, { error: 'Invalid credentials in Authorization header' });
      return false;
    }
    if (req.headers.authorization !== `Bearer ${options.token}`) {
      json(res, 401, { error: 'Invalid credentials in Authorization header' });
      return false;
    }
    return true;
  };

  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const url = new URL(req.url!, base);
    const path = decodeURIComponent(url.pathname);
    requests.push({ method: req.method!, path: url.pathname + url.search, authorization: req.headers.authorization, contentType: req.headers['content-type'], body });
    let m: RegExpExecArray | null;
    try {
      // LFS upload target: unauthenticated like the Hub's presigned storage URLs.
      if (req.method === 'PUT' && (m = /^\/lfs-upload\/([0-9a-f]{64})$/.exec(path))) {
        if (sha256(body) !== m[1]) return json(res, 400, { error: `body sha256 ${sha256(body)} is not ${m[1]}` });
        lfs.set(m[1]!, body);
        res.writeHead(200).end();
        return;
      }
      if (!authorized(req, res)) return;

      if (req.method === 'GET' && path === '/api/whoami-v2') {
        return json(res, 200, { type: 'user', name: options.username ?? 'test-user', auth: { type: 'access_token', accessToken: { displayName: 'test', role: 'write' } } });
      }
      if (req.method === 'POST' && path === '/api/repos/create') {
        const p = JSON.parse(body.toString()) as { name: string; organization?: string; visibility?: string; type: string };
        const id = `${p.organization}/${p.name}`;
        if (p.type !== 'model') return json(res, 400, { error: `type ${p.type}` });
        if (repos.has(id)) return json(res, 409, { error: 'You already created this model repo', url: `${base}/${id}` });
        const initial: HubCommit = { oid: oid(), title: 'initial commit', lines: [] };
        repos.set(id, { id, visibility: p.visibility, commits: [initial], files: new Map([['.gitattributes', { bytes: Buffer.from('*.safetensors filter=lfs diff=lfs merge=lfs -text\n'), lfs: false }]]) });
        return json(res, 200, { url: `${base}/${id}`, name: id, id: `repo-${id}` });
      }
      if ((m = /^\/api\/models\/([^/]+\/[^/]+)(\/.*)?$/.exec(path))) {
        const repo = repos.get(m[1]!);
        const rest = m[2] ?? '';
        if (!repo) return json(res, 404, { error: 'Repository not found' });
        if (req.method === 'GET' && rest === '') return json(res, 200, { id: repo.id, private: repo.visibility === 'private' });
        if (req.method === 'GET' && rest === '/commits/main') {
          return json(
            res,
            200,
            [...repo.commits].reverse().map((c) => ({ id: c.oid, title: c.title, message: c.description ?? '', authors: [{ user: 'test-user', avatar: '' }], date: new Date().toISOString() })),
          );
        }
        if (req.method === 'GET' && rest === '/tree/main') {
          return json(
            res,
            200,
            [...repo.files].map(([p, f]) => ({ type: 'file', path: p, size: f.bytes.length, oid: sha256(f.bytes).slice(0, 40), ...(f.lfs ? { lfs: { oid: sha256(f.bytes), size: f.bytes.length, pointerSize: 130 } } : {}) })),
          );
        }
        if (req.method === 'POST' && rest === '/preupload/main') {
          const p = JSON.parse(body.toString()) as { files: { path: string; size: number; sample: string }[] };
          return json(res, 200, {
            files: p.files.map((f) => ({ path: f.path, uploadMode: /\.(safetensors|png)$/.test(f.path) || f.size > 10_000_000 ? 'lfs' : 'regular', shouldIgnore: false })),
          });
        }
        if (req.method === 'POST' && rest === '/commit/main') {
          if (req.headers['content-type'] !== 'application/x-ndjson') return json(res, 400, { error: 'expected NDJSON' });
          const lines = body.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { key: string; value: Record<string, unknown> });
          const header = lines.find((l) => l.key === 'header')?.value as { summary: string; description?: string; parentCommit?: string } | undefined;
          if (!header?.summary) return json(res, 400, { error: 'no commit header' });
          const head = repo.commits.at(-1)!;
          if (header.parentCommit && header.parentCommit !== head.oid) return json(res, 412, { error: 'A commit has happened since. Please refresh and try again.' });
          const files = new Map(repo.files);
          for (const { key, value } of lines) {
            if (key === 'file') files.set(value.path as string, { bytes: Buffer.from(value.content as string, 'base64'), lfs: false });
            else if (key === 'lfsFile') {
              const bytes = lfs.get(value.oid as string);
              if (!bytes || bytes.length !== value.size) return json(res, 422, { error: `LFS object ${String(value.oid)} was not uploaded` });
              files.set(value.path as string, { bytes, lfs: true });
            } else if (key === 'deletedFile') files.delete(value.path as string);
            else if (key !== 'header') return json(res, 400, { error: `unknown operation ${key}` });
          }
          const commit: HubCommit = { oid: oid(), title: header.summary, description: header.description, parentCommit: header.parentCommit, lines };
          repo.commits.push(commit);
          repo.files = files;
          return json(res, 200, { success: true, commitOid: commit.oid, commitUrl: `${base}/${repo.id}/commit/${commit.oid}`, hookOutput: '' });
        }
      }
      if (req.method === 'POST' && (m = /^\/([^/]+\/[^/]+)\.git\/info\/lfs\/objects\/batch$/.exec(path))) {
        if (!repos.has(m[1]!)) return json(res, 404, { error: 'Repository not found' });
        const p = JSON.parse(body.toString()) as { operation: string; transfers: string[]; objects: { oid: string; size: number }[] };
        if (p.operation !== 'upload' || !p.transfers.includes('basic')) return json(res, 400, { error: 'expected an upload offering basic transfer' });
        res.writeHead(200, { 'content-type': 'application/vnd.git-lfs+json' });
        res.end(
          JSON.stringify({
            transfer: 'basic',
            objects: p.objects.map((o) =>
              lfs.has(o.oid) ? { oid: o.oid, size: o.size } : { oid: o.oid, size: o.size, authenticated: true, actions: { upload: { href: `${base}/lfs-upload/${o.oid}?X-Amz-Signature=stand-in` } } },
            ),
          }),
        );
        return;
      }
      // The raw content of a file (lib/file-download-info.ts asks for bytes=0-0 first, then the range).
      if (req.method === 'GET' && (m = /^\/([^/]+\/[^/]+)\/raw\/main\/(.+)$/.exec(path))) {
        if (!authorized(req, res)) return;
        const file = repos.get(m[1]!)?.files.get(m[2]!);
        if (!file) {
          res.writeHead(404, { 'x-error-code': 'EntryNotFound', 'content-type': 'application/json' });
          return void res.end(JSON.stringify({ error: 'Entry not found' }));
        }
        const range = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ''));
        const from = range ? Number(range[1]) : 0;
        const to = range && range[2] ? Math.min(Number(range[2]), file.bytes.length - 1) : file.bytes.length - 1;
        res.writeHead(range ? 206 : 200, {
          etag: `"${sha256(file.bytes).slice(0, 40)}"`,
          'content-type': 'text/plain; charset=utf-8',
          ...(range ? { 'content-range': `bytes ${from}-${to}/${file.bytes.length}` } : {}),
        });
        return void res.end(file.bytes.subarray(from, to + 1));
      }
      unhandled.push(`${req.method} ${url.pathname}`);
      json(res, 404, { error: `stand-in: no route for ${req.method} ${url.pathname}` });
    } catch (err) {
      json(res, 500, { error: String(err) });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    requests,
    unhandled,
    repos,
    lfs,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
