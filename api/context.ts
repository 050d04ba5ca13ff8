// What every route needs: the Temporal client, the config and the S3 store, made once per server.
import type { Client } from '@temporalio/client';
import type { Context } from 'hono';
import type { Config } from '../lib/config.js';
import type { Storage } from '../lib/s3.js';
import { ApiError } from './errors.js';

export interface ApiDeps {
  client: Client;
  config: Config;
  storage: Storage;
}

/** The body as JSON, or a 400 that says it is not. */
export async function jsonBody(c: Context): Promise<unknown> {
  const text = await c.req.text();
  try {
    return JSON.parse(text || 'null');
  } catch {
    throw new ApiError(400, 'invalid_json', 'body: not valid JSON', 'body');
  }
}

export const expiresAt = (seconds: number) => new Date(Date.now() + seconds * 1000).toISOString();
