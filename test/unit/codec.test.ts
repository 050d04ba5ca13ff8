// The AES-256-GCM payload codec on its own: round trip, tampering, a wrong key.
import { randomBytes } from 'node:crypto';
import { defaultPayloadConverter } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { AesGcmCodec } from '../../lib/codec.js';

const codec = new AesGcmCodec(randomBytes(32));

describe('AesGcmCodec', () => {
  it('round-trips payloads and refuses tampered ones or another key', async () => {
    const original = [defaultPayloadConverter.toPayload({ trigger: 'lfsecret' })];
    const [encrypted] = await codec.encode(original);
    expect(Buffer.from(encrypted!.data!).toString('latin1')).not.toContain('lfsecret');
    const [decoded] = await codec.decode([encrypted!]);
    expect(defaultPayloadConverter.fromPayload(decoded!)).toEqual({ trigger: 'lfsecret' });
    const tampered = { ...encrypted!, data: Buffer.from(encrypted!.data!).map((b, i) => (i === 20 ? b ^ 1 : b)) };
    await expect(codec.decode([tampered])).rejects.toThrow();
    await expect(new AesGcmCodec(randomBytes(32)).decode([encrypted!])).rejects.toThrow(/encrypted with key/);
    expect(() => new AesGcmCodec(randomBytes(16))).toThrow(/32 bytes/);
  });
});
