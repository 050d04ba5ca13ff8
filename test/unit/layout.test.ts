// The shape of the code base: no import cycles between files, and no file grown past 400 lines
// except the cohesive classes listed here with their reason.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../../lib/toolchain.js';

const SOURCE_DIRS = ['activities', 'bench', 'chaos', 'cli', 'contract', 'lib', 'runpod-local', 'scripts', 'stack', 'test', 'testkit', 'workflows'];
const ROOT_FILES = ['client.ts', 'worker.ts'];
/** Files allowed past 400 lines, and why. */
const LONG_FILES: Record<string, string> = {
  'runpod-local/jobs.ts': "JobStore: one class, the job state machine (queue, takes, reports, retention); splitting it would spread one invariant over files",
  'runpod-local/supervisor.ts': 'Supervisor: one class, the worker processes of an endpoint (spawn, heartbeats, stops, restarts)',
};

function files(dir: string, ext: RegExp): string[] {
  return readdirSync(path.join(repoRoot, dir), { recursive: true, encoding: 'utf8' })
    .map((f) => path.join(dir, f))
    .filter((f) => ext.test(f) && statSync(path.join(repoRoot, f)).isFile() && !f.includes('node_modules'));
}

const tsFiles = [...ROOT_FILES, ...SOURCE_DIRS.flatMap((d) => files(d, /\.ts$/))];

describe('code layout', () => {
  it('has no import cycles', () => {
    const graph = new Map<string, string[]>();
    for (const file of tsFiles) {
      const imports = ts.preProcessFile(readFileSync(path.join(repoRoot, file), 'utf8'), true, true).importedFiles.map((i) => i.fileName);
      graph.set(
        file,
        imports.filter((i) => i.startsWith('.')).map((i) => path.normalize(path.join(path.dirname(file), i)).replace(/\.js$/, '.ts')),
      );
    }
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const visit = (file: string, trail: string[]) => {
      if (state.get(file) === 'done') return;
      if (state.get(file) === 'open') return void cycles.push([...trail.slice(trail.indexOf(file)), file].join(' → '));
      state.set(file, 'open');
      for (const next of graph.get(file) ?? []) if (graph.has(next)) visit(next, [...trail, file]);
      state.set(file, 'done');
    };
    for (const file of graph.keys()) visit(file, []);
    expect(cycles).toEqual([]);
  });

  it('keeps files under 400 lines (but the listed cohesive classes)', () => {
    const sources = [...tsFiles, ...files('gpu-worker', /\.py$/)];
    const long = sources.filter((f) => readFileSync(path.join(repoRoot, f), 'utf8').split('\n').length > 400 && !(f in LONG_FILES));
    expect(long).toEqual([]);
  });
});
