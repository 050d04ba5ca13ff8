// Logs carry no secrets: censored fields, presigned query strings stripped, through Temporal's adapter too.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { makeLogger, scrubUrls, temporalLogger } from '../../lib/logger.js';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { lines, logger: makeLogger({ name: 'test', level: 'debug', destination }) };
}

const presigned = 'https://s3.example/b/k.png?X-Amz-Credential=AKIA%2F20261125&X-Amz-Signature=deadbeef';

describe('logger', () => {
  it('censors secret fields and presigned query strings, in objects, messages and errors', () => {
    const { lines, logger } = capture();
    logger.info({ apiKey: 'rp-key', headers: { authorization: 'Bearer rp-key' }, input: { images: [{ url: presigned }] } }, `fetching ${presigned}`);
    logger.error({ err: new Error(`PUT ${presigned} failed`) }, 'upload failed');
    const text = lines.join('');
    for (const secret of ['rp-key', 'X-Amz-Signature', 'X-Amz-Credential', 'deadbeef']) expect(text).not.toContain(secret);
    expect(text).toContain('https://s3.example/b/k.png?<redacted>');
    expect(lines).toHaveLength(2);
  });

  it('censors Hugging Face tokens in fields and in free text', () => {
    const token = 'hf_loggertesttoken0123456789abcdef';
    const { lines, logger } = capture();
    logger.info({ HF_TOKEN: token, hub: { token }, accessToken: token, headers: { Authorization: `Bearer ${token}` } }, `calling with ${token}`);
    logger.warn({ error: `request failed: Authorization: Bearer ${token}` }, 'failed');
    expect(lines).toHaveLength(2);
    expect(lines.join('')).not.toContain(token);
    expect(lines.join('')).not.toContain(token.slice(3));
  });

  it('keeps the scheme, host and path of a URL and drops its query string', () => {
    expect(scrubUrls('GET http://s3/b/k.png?X-Amz-Signature=abc failed')).toBe('GET http://s3/b/k.png?<redacted> failed');
  });

  it('serves as the Temporal worker logger with levels and metadata', () => {
    const { lines, logger } = capture();
    const temporal = temporalLogger(logger);
    temporal.warn('GPU status poll failed', { gpuJobId: 'job-1', error: `GET ${presigned}`, taskToken: 'tok' });
    temporal.debug('debug line');
    const [warn, debug] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(warn).toMatchObject({ level: 40, msg: 'GPU status poll failed', gpuJobId: 'job-1', taskToken: '<redacted>' });
    expect(String(warn!.error)).not.toContain('Signature');
    expect(debug).toMatchObject({ level: 20, msg: 'debug line' });
  });
});
