// The loraflow CLI as a user runs it (a child process of client.ts), against a stack's environment:
// its exit code and both streams, never a throw.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from '../lib/toolchain.js';

const run = promisify(execFile);

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A runner bound to one environment (a stack's `env`, read at each call); `timeoutMs` per command. */
export function cliRunner(env: () => NodeJS.ProcessEnv, timeoutMs = 300_000): (...args: string[]) => Promise<CliResult> {
  return async (...args) => {
    try {
      const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'client.ts'), ...args], { env: env(), cwd: repoRoot, timeout: timeoutMs });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: number; stdout: string; stderr: string };
      return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout, stderr: e.stderr };
    }
  };
}
