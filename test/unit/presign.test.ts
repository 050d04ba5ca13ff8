// Presigned URLs are signed for at most what their credentials have left: a URL signed with role
// credentials stops working when they expire, whatever X-Amz-Expires says (signing is offline).
import { S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { presignGet, presignPut, presignPutIfAbsent, type Storage, urlLifetime } from '../../lib/s3.js';

const storageWith = (expiration?: Date): Storage => ({
  bucket: 'b',
  client: new S3Client({
    region: 'us-east-1',
    endpoint: 'http://127.0.0.1:9',
    forcePathStyle: true,
    credentials: async () => ({ accessKeyId: 'AKIA', secretAccessKey: 'secret', sessionToken: 'token', ...(expiration ? { expiration } : {}) }),
  }),
});
const expiresOf = (url: string) => Number(new URL(url).searchParams.get('X-Amz-Expires'));

describe('presigned URL lifetimes', () => {
  it('are cut to the credentials that sign them, with a margin, and say when they were', async () => {
    const soon = storageWith(new Date(Date.now() + 10 * 60_000));
    for (const url of [await presignGet(soon, 'k', 12 * 3600), await presignPut(soon, 'k', 12 * 3600), await presignPutIfAbsent(soon, 'k')]) {
      expect(expiresOf(url)).toBeLessThanOrEqual(10 * 60 - 120);
      expect(expiresOf(url)).toBeGreaterThan(10 * 60 - 130);
    }
    expect(await urlLifetime(soon, 3600)).toMatchObject({ seconds: expect.any(Number), credentialsExpireAt: expect.any(Date) });

    const lasting = storageWith();
    expect(expiresOf(await presignGet(lasting, 'k', 12 * 3600))).toBe(12 * 3600);
    expect(await urlLifetime(lasting, 3600)).toEqual({ seconds: 3600 });
  });
});
