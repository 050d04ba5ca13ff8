// How the worker and the CLI connect to Temporal: in the clear locally; TLS, mTLS or an API key for
// a team's server, from the config alone (a file that cannot be read is named).
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../lib/config.js';
import { connectPatiently, temporalConnectionOptions } from '../../lib/temporal-connection.js';

describe('temporalConnectionOptions', () => {
  it('is plain by default, mTLS with a client certificate, TLS with an API key, and names a missing file', () => {
    expect(temporalConnectionOptions(loadConfig({}))).toEqual({ address: '127.0.0.1:7233' });
    const dir = mkdtempSync(path.join(os.tmpdir(), 'loraflow-tls-'));
    for (const f of ['crt.pem', 'key.pem', 'ca.pem']) writeFileSync(path.join(dir, f), `-----${f}-----`);
    const mtls = temporalConnectionOptions(
      loadConfig({ TEMPORAL_ADDRESS: 'temporal.internal:7233', TEMPORAL_TLS_CERT: path.join(dir, 'crt.pem'), TEMPORAL_TLS_KEY: path.join(dir, 'key.pem'), TEMPORAL_TLS_CA: path.join(dir, 'ca.pem'), TEMPORAL_TLS_SERVER_NAME: 'temporal' }),
    );
    expect(mtls).toEqual({
      address: 'temporal.internal:7233',
      tls: { clientCertPair: { crt: Buffer.from('-----crt.pem-----'), key: Buffer.from('-----key.pem-----') }, serverRootCACertificate: Buffer.from('-----ca.pem-----'), serverNameOverride: 'temporal' },
    });
    expect(temporalConnectionOptions(loadConfig({ TEMPORAL_ADDRESS: 'ns.acct.tmprl.cloud:7233', TEMPORAL_API_KEY: 'key-123' }))).toEqual({ address: 'ns.acct.tmprl.cloud:7233', tls: {}, apiKey: 'key-123' });
    expect(() => temporalConnectionOptions(loadConfig({ TEMPORAL_TLS_CERT: path.join(dir, 'crt.pem') }))).toThrow(/TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together/);
    expect(() => temporalConnectionOptions(loadConfig({ TEMPORAL_TLS_CA: path.join(dir, 'nope.pem') }))).toThrow(/TEMPORAL_TLS_CA=.*nope\.pem cannot be read/);
  });
});

describe('connectPatiently', () => {
  it('waits for a server that does not answer yet, reporting each refusal, and gives up at once on a config error', async () => {
    const refusals: number[] = [];
    let calls = 0;
    const connect = async () => (++calls < 4 ? Promise.reject(new Error('connection refused')) : 'connected');
    expect(await connectPatiently(connect, (_err, attempt) => refusals.push(attempt), async () => {})).toBe('connected');
    expect(refusals).toEqual([1, 2, 3]);
    const badFile = async () => Promise.reject(new Error('config: TEMPORAL_TLS_CA=x cannot be read'));
    await expect(connectPatiently(badFile, () => refusals.push(-1), async () => {})).rejects.toThrow(/TEMPORAL_TLS_CA/);
    expect(refusals).toEqual([1, 2, 3]);
  });
});
