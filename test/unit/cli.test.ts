// The CLI as a user meets it before any stack runs: help that is true, errors naming the flag.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { FAMILY_DEFAULTS } from '../../contract/families.js';
import { TrainingParams } from '../../contract/gpu-job.js';
import { repoRoot } from '../../lib/toolchain.js';

async function loraflow(...args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(path.join(repoRoot, 'bin/loraflow.js'), args, { cwd: repoRoot });
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout + e.stderr };
  }
}

describe('loraflow CLI', () => {
  it('lists every command in --help', async () => {
    const { code, out } = await loraflow('--help');
    expect(code).toBe(0);
    for (const command of ['train', 'status', 'logs', 'cancel', 'list', 'report', 'download', 'schedule', 'dev', 'runpod-local']) expect(out).toMatch(new RegExp(`^\\s+${command}\\b`, 'm'));
    const schedule = await loraflow('schedule', '--help');
    for (const command of ['create', 'list', 'pause', 'unpause', 'trigger', 'backfill', 'delete']) expect(schedule.out).toMatch(new RegExp(`^\\s+${command}\\b`, 'm'));
    const create = await loraflow('schedule', 'create', '--help');
    for (const flag of ['--cron <expr>', '--overlap <policy>', '--steps <n>', '--json']) expect(create.out).toContain(flag);
  });

  it('ends --help with the try-and-iterate loop, in commands and flags that exist', async () => {
    const { out } = await loraflow('--help');
    const loop = out.slice(out.indexOf('Try and iterate:')).split('\n').slice(1).filter((l) => l.startsWith('  loraflow '));
    expect(loop.length).toBeGreaterThanOrEqual(6);
    for (const line of loop) {
      const command = line.split(/\s+/)[2]!;
      expect(out, line).toMatch(new RegExp(`^\\s+${command}\\b`, 'm'));
      const help = (await loraflow(command, '--help')).out;
      for (const flag of line.match(/--[a-z-]+/g) ?? []) expect(help, `${command} ${flag}`).toContain(flag);
    }
  });

  it('shows the defaults the contract really applies', async () => {
    const { out } = await loraflow('train', '--help');
    const applied = TrainingParams.parse({});
    const flat = out.replace(/\s+/g, ' ');
    const { sd, sdxl, flux } = FAMILY_DEFAULTS;
    expect(flat).toContain(`training steps (default by base model family: sd ${sd.steps}, sdxl ${sdxl.steps}, flux ${flux.steps})`);
    expect(flat).toContain(`LoRA rank (default: ${sd.rank})`);
    expect(flat).toContain(`learning rate (default: ${sd.learningRate})`);
    expect(new Set([sd.rank, sdxl.rank, flux.rank]).size, 'one rank default for all: the help names one').toBe(1);
    expect(out).toContain(`random seed (default: ${applied.seed})`);
  });

  it('names the bad flag or file and exits 1', async () => {
    const dataset = path.join(repoRoot, 'samples/demo');
    expect(await loraflow('train', '--name', 'Bad Name', '--images', dataset, '--trigger', 'lfx')).toEqual({ code: 1, out: expect.stringContaining('loraflow: --name: lowercase letters') });
    expect(await loraflow('train', '--name', 'ok', '--images', dataset, '--trigger', 'has space')).toEqual({ code: 1, out: expect.stringContaining('loraflow: --trigger:') });
    expect(await loraflow('train', '--name', 'ok', '--images', dataset, '--trigger', 'lfx', '--steps', '0')).toEqual({ code: 1, out: expect.stringContaining('loraflow: --steps:') });
    expect(await loraflow('train', '--name', 'ok', '--images', 'no/such/dir', '--trigger', 'lfx')).toEqual({ code: 1, out: expect.stringMatching(/--images: .*no\/such\/dir does not exist/) });
    expect((await loraflow('train', '--name', 'ok', '--images', dataset, '--trigger', 'lfx', '--steps', 'ten')).out).toContain("argument 'ten' is invalid");
    const schedule = ['schedule', 'create', '--name', 'ok', '--images', dataset, '--trigger', 'lfx', '--cron', '0 3 * * *'];
    expect(await loraflow(...schedule, '--overlap', 'sometimes')).toEqual({ code: 1, out: expect.stringContaining('loraflow: --overlap: expected one of skip, buffer-one, allow-all') });
    expect((await loraflow('schedule', 'backfill', 'x', '--from', 'yesterday', '--to', '2026-01-01T00:00:00Z')).out).toContain('expected an ISO date-time');
  });
});
