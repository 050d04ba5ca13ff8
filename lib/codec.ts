// Optional end-to-end encryption of everything loraflow stores in Temporal: an AES-256-GCM payload
// codec, used by the worker and the CLI when LORAFLOW_PAYLOAD_KEY is set, and the HTTP codec
// endpoint that lets the Web UI show decoded payloads to people allowed to see them.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { type Payload, type PayloadCodec, METADATA_ENCODING_KEY } from '@temporalio/common';
import proto from '@temporalio/proto';
import type { Config } from './config.js';

const { temporal } = proto; // a CommonJS module: no named ESM exports
const ENCODING = 'binary/encrypted';
const KEY_ID = 'encryption-key-id';

export class AesGcmCodec implements PayloadCodec {
  readonly keyId: string;

  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new Error('LORAFLOW_PAYLOAD_KEY must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)');
    // Names the key without revealing it, so a rotated key can be told apart.
    this.keyId = createHash('sha256').update(key).digest('hex').slice(0, 16);
  }

  /** The codec for LORAFLOW_PAYLOAD_KEY, or none when it is unset. */
  static fromConfig(config: Pick<Config, 'LORAFLOW_PAYLOAD_KEY'>): AesGcmCodec | undefined {
    const value = config.LORAFLOW_PAYLOAD_KEY;
    return value ? new AesGcmCodec(Buffer.from(value, 'base64')) : undefined;
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', this.key, iv);
      const plain = temporal.api.common.v1.Payload.encode(payload).finish();
      const data = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return { metadata: { [METADATA_ENCODING_KEY]: Buffer.from(ENCODING), [KEY_ID]: Buffer.from(this.keyId) }, data };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => {
      if (Buffer.from(payload.metadata?.[METADATA_ENCODING_KEY] ?? []).toString() !== ENCODING) return payload;
      const keyId = Buffer.from(payload.metadata?.[KEY_ID] ?? []).toString();
      if (keyId !== this.keyId) throw new Error(`payload was encrypted with key ${keyId}, not with the configured key ${this.keyId}`);
      const data = Buffer.from(payload.data ?? []);
      const decipher = createDecipheriv('aes-256-gcm', this.key, data.subarray(0, 12));
      decipher.setAuthTag(data.subarray(data.length - 16));
      const plain = Buffer.concat([decipher.update(data.subarray(12, data.length - 16)), decipher.final()]);
      return temporal.api.common.v1.Payload.decode(plain);
    });
  }
}

/** `dataConverter` option for Worker.create and new Client(): empty when encryption is off. */
export function dataConverterFor(config: Pick<Config, 'LORAFLOW_PAYLOAD_KEY'>) {
  const codec = AesGcmCodec.fromConfig(config);
  return codec ? { payloadCodecs: [codec] } : {};
}
