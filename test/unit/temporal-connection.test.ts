// How the worker and the CLI connect to Temporal: in the clear locally; TLS, mTLS or an API key for
// a team's server, from the config alone (a file that cannot be read is named).
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../lib/config.js';
import { temporalConnectionOptions } from '../../lib/temporal-connection.js';

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
