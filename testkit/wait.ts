// Waiting in tests: the one polling helper, and whether a process group still lives.
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Calls `get` every `everyMs` until `ok` holds for its value; fails with the last value after `timeoutMs`. */
export async function until<T>(get: () => T | Promise<T>, ok: (v: T) => boolean, timeoutMs = 20_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await get();
  while (!ok(last)) {
    if (Date.now() > deadline) throw new Error(`timed out; last ${JSON.stringify(last)}`);
    await sleep(everyMs);
    last = await get();
  }
  return last;
}

/** Whether any live (non-zombie) process is in the process group `pgid`. */
export function groupAlive(pgid: number): boolean {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // pid (comm) state ppid pgrp ...; comm may contain spaces, so split after the last ')'
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') return true;
  }
  return false;
}
