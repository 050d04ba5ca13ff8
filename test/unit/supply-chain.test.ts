// What goes into the GPU image: hash-pinned requirements without test tools, model revisions
// pinned to commits, and no pickled-weights fallback (there is no container engine here: the
// Dockerfile is read, not built).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../../lib/toolchain.js';

const read = (file: string) => readFileSync(path.join(repoRoot, file), 'utf8');
/** The Dockerfile's instructions, comments left out. */
const instructions = () => read('Dockerfile.gpu').split('\n').filter((l) => !/^\s*#/.test(l)).join('\n');
/** `name==version` lines of a compiled requirements file, each with its hashes. */
function requirements(file: string): { name: string; hashes: number }[] {
  const text = read(file).replace(/\\\n\s*/g, ' ');
  return text
    .split('\n')
    .filter((l) => /^[A-Za-z0-9]/.test(l))
    .map((l) => ({ name: l.split('==')[0]!.toLowerCase(), hashes: (l.match(/--hash=sha256:[0-9a-f]{64}/g) ?? []).length }));
}

describe('the GPU image', () => {
  it('installs only hash-pinned runtime requirements', () => {
    const runtime = requirements('gpu-worker/requirements.txt');
    expect(runtime.length).toBeGreaterThan(50);
    for (const r of runtime) expect(r.hashes, r.name).toBeGreaterThan(0);
    expect(runtime.map((r) => r.name)).not.toContain('pytest');
    for (const r of requirements('gpu-worker/requirements-dev.txt')) expect(r.hashes, r.name).toBeGreaterThan(0);
    const dockerfile = instructions();
    const installs = dockerfile.split('\n').filter((l) => /pip install/.test(l));
    expect(installs).toEqual([expect.stringMatching(/pip install --require-hashes --no-deps -r \/app\/gpu-worker\/requirements\.txt/)]);
    expect(dockerfile).not.toMatch(/requirements-dev/);
  });

  it('pins the base model and captioner to commits and never loads pickled weights', () => {
    const dockerfile = instructions();
    for (const arg of ['BASE_MODEL_REVISION', 'CAPTIONER_REVISION']) expect(dockerfile, arg).toMatch(new RegExp(`^ARG ${arg}=[0-9a-f]{40}$`, 'm'));
    expect(dockerfile).not.toMatch(/pytorch_model\.bin|\*\.bin|\.ckpt|\.pt"/);
    expect(read('gpu-worker/models.py')).toMatch(/use_safetensors=True/);
  });
});
