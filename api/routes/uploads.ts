// POST /v1/uploads: presigned PUT URLs under uploads/<id>/, so images go from the client straight to
// S3 and never through the API or Temporal; a training then names the upload as its dataset.
import { randomBytes } from 'node:crypto';
import { Hono } from 'hono';
import { presignPut } from '../../lib/s3.js';
import { type ApiDeps, expiresAt, jsonBody } from '../context.js';
import { parse } from '../errors.js';
import { UploadCreate } from '../schemas.js';

/** Where an upload's files live: outside loraflow's own prefixes, so ingest may read it as s3:// (activities/dataset-s3.ts). */
export const uploadPrefix = (uploadId: string) => `uploads/${uploadId}/`;
export const newUploadId = () => `up-${randomBytes(16).toString('hex')}`;

export function uploadRoutes({ storage, config }: ApiDeps): Hono {
  return new Hono().post('/', async (c) => {
    const body = parse(UploadCreate, await jsonBody(c));
    const uploadId = newUploadId();
    const seconds = config.LORAFLOW_API_URL_SECONDS;
    const files = await Promise.all(
      body.files.map(async (f) => ({
        name: f.name,
        method: 'PUT' as const,
        url: await presignPut(storage, `${uploadPrefix(uploadId)}${f.name}`, seconds),
        headers: f.contentType ? { 'content-type': f.contentType } : {},
      })),
    );
    return c.json({ uploadId, expiresAt: expiresAt(seconds), files }, 201);
  });
}
