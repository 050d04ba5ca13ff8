// Bearer tokens for `loraflow serve`: the server keeps only their sha256 (LORAFLOW_API_TOKENS), so
// a leaked config file grants nothing. RunPod's clients send `Authorization: <key>` or `Bearer
// <key>`; both are read. Every route goes through this, /openapi.json included.
import { timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { sha256 } from '../lib/hash.js';

/** The token the local stack accepts when LORAFLOW_API_TOKENS is unset (it says so when it starts). */
export const LOCAL_DEV_TOKEN = 'local-dev-token';

export const tokenHash = (token: string) => `sha256:${sha256(token)}`;

/** `sha256:<hex>,…` → the hashes; throws when there are none. */
export function parseTokenHashes(setting: string | undefined): string[] {
  const hashes = (setting ?? '').split(',').map((h) => h.trim()).filter(Boolean);
  if (!hashes.length) throw new Error('config: LORAFLOW_API_TOKENS is unset: give the sha256 of at least one bearer token (`printf %s TOKEN | sha256sum`)');
  return hashes;
}

export function bearerAuth(hashes: string[]): MiddlewareHandler {
  const wanted = hashes.map((h) => Buffer.from(h));
  return async (c, next) => {
    const header = c.req.header('authorization') ?? '';
    const token = header.replace(/^Bearer\s+/i, '').trim();
    const got = Buffer.from(tokenHash(token));
    // Compare with every hash in constant time, so timing says nothing about which one nearly matched.
    let ok = false;
    for (const w of wanted) ok = (w.length === got.length && timingSafeEqual(w, got)) || ok;
    if (!token || !ok) {
      c.header('WWW-Authenticate', 'Bearer realm="loraflow"');
      return c.json({ error: { code: 'unauthorized', message: token ? 'the bearer token is not one of LORAFLOW_API_TOKENS' : 'missing bearer token: send Authorization: Bearer <token>' } }, 401);
    }
    await next();
  };
}
