// There is no container engine here: check docker-compose.yml's structure instead of running it.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CONFIG_VARIABLES, loadConfig } from '../../lib/config.js';
import { gpuTaskQueue } from '../../workflows/definitions.js';
import { repoRoot } from '../../lib/toolchain.js';

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  environment?: Record<string, string>;
  ports?: string[];
  healthcheck?: { test: string[] };
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  entrypoint?: string[];
}
const compose = parse(readFileSync(path.join(repoRoot, 'docker-compose.yml'), 'utf8')) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const { services } = compose;

describe('docker-compose.yml', () => {
  it('has Temporal on PostgreSQL, its UI, S3 and the loraflow worker', () => {
    expect(Object.keys(services).sort()).toEqual(['loraflow-worker', 'postgresql', 's3', 'temporal', 'temporal-schema', 'temporal-setup', 'temporal-ui']);
  });

  it('pins every image to an explicit version', () => {
    for (const [name, service] of Object.entries(services)) {
      if (service.build) continue;
      expect(service.image, name).toMatch(/^[\w./-]+:v?\d+\.\d+(\.\d+)?$/);
    }
  });

  it('gates startup on healthchecks and finished setup steps', () => {
    for (const name of ['postgresql', 'temporal', 'temporal-ui', 's3']) expect(services[name]!.healthcheck?.test.length, name).toBeGreaterThan(0);
    for (const [name, service] of Object.entries(services)) {
      for (const [dep, { condition }] of Object.entries(service.depends_on ?? {})) {
        expect(services[dep], `${name} depends on ${dep}`).toBeDefined();
        expect(condition).toBe(services[dep]!.healthcheck ? 'service_healthy' : 'service_completed_successfully');
      }
    }
  });

  it('keeps data in named volumes and exposes the documented ports', () => {
    expect(services.postgresql!.volumes).toContain('postgres:/var/lib/postgresql/data');
    expect(services.s3!.volumes).toContain('s3:/data');
    expect(Object.keys(compose.volumes)).toEqual(['postgres', 's3']);
    expect(services.temporal!.ports).toContain('${LORAFLOW_BIND_ADDRESS:-127.0.0.1}:7233:7233');
    expect(services['temporal-ui']!.ports).toContain('${LORAFLOW_BIND_ADDRESS:-127.0.0.1}:8080:8080');
  });

  it('publishes every port on 127.0.0.1 unless told otherwise, and requires every secret (no defaults)', () => {
    for (const [name, service] of Object.entries(services)) {
      for (const port of service.ports ?? []) expect(port, name).toMatch(/^\$\{LORAFLOW_BIND_ADDRESS:-127\.0\.0\.1\}:\d+:\d+$/);
    }
    const secret = /PASSWORD|PWD|SECRET|ROOT_ACCESS_KEY|ACCESS_KEY_ID|API_KEY/;
    for (const [name, service] of Object.entries(services)) {
      for (const [variable, value] of Object.entries(service.environment ?? {})) {
        if (secret.test(variable)) expect(String(value), `${name}.${variable}`).toMatch(/^\$\{[A-Z_]+:\?[^}]+\}$/);
      }
    }
  });

  it('gives the Temporal server the dynamic config that dispatches queued tasks by priority', () => {
    const temporal = services.temporal!;
    const mount = temporal.volumes!.find((v) => v.endsWith(`:${temporal.environment!.DYNAMIC_CONFIG_FILE_PATH}:ro`));
    expect(mount, 'a read-only mount of DYNAMIC_CONFIG_FILE_PATH').toBeDefined();
    const file = parse(readFileSync(path.join(repoRoot, mount!.split(':')[0]!), 'utf8')) as Record<string, { value: unknown; constraints?: unknown }[]>;
    expect(file['matching.useNewMatcher']).toEqual([{ value: true }]);
    // One partition for the GPU-stage queue (worker.ts serves `${LORAFLOW_TASK_QUEUE}-gpu`), where priority is strict.
    const gpuQueue = gpuTaskQueue(loadConfig({}).LORAFLOW_TASK_QUEUE);
    for (const key of ['matching.numTaskqueueReadPartitions', 'matching.numTaskqueueWritePartitions']) {
      expect(file[key], key).toEqual([{ value: 1, constraints: { taskQueueName: gpuQueue } }]);
    }
  });

  it('configures the worker only with variables loraflow reads, and its build files exist', () => {
    const known = CONFIG_VARIABLES;
    for (const variable of Object.keys(services['loraflow-worker']!.environment!)) expect(known, variable).toContain(variable);
    expect(existsSync(path.join(repoRoot, services['loraflow-worker']!.build!.dockerfile))).toBe(true);
    for (const name of ['temporal-schema', 'temporal-setup']) {
      const script = services[name]!.entrypoint!.at(-1)!.replace('/compose/', 'compose/');
      expect(existsSync(path.join(repoRoot, script)), script).toBe(true);
    }
  });
});
