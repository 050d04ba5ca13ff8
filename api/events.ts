// GET /v1/trainings/{id}/events: the run's progress as server-sent events. Each `progress` event is
// sent when stage, state, step, loss or GPU state changed (read the way `loraflow status` reads them:
// the workflow's query and the GPU stage's heartbeat); `end` carries the final status, then the
// stream closes.
import type { Client } from '@temporalio/client';
import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import { status } from '../cli/inspect.js';

const POLL_MS = 1000;

export function progressEvents(c: Context, client: Client, id: string) {
  return streamSSE(c, async (stream) => {
    let last = '';
    let n = 0;
    let closed = false;
    stream.onAbort(() => {
      closed = true;
    });
    while (!closed) {
      const s = await status(client, id).catch(() => undefined);
      if (s) {
        const event = { stage: s.stage, state: s.state, status: s.status, step: s.step, totalSteps: s.totalSteps, loss: s.loss, gpuState: s.gpuState };
        const data = JSON.stringify(event);
        if (data !== last) await stream.writeSSE({ event: 'progress', data, id: String(++n) });
        last = data;
        if (s.status !== 'RUNNING') {
          await stream.writeSSE({ event: 'end', data: JSON.stringify({ status: s.status, stage: s.stage, ...(s.result ? { result: { version: s.result.version, sha256: s.result.sha256 } } : {}), ...(s.error ? { error: s.error } : {}) }), id: String(++n) });
          return;
        }
      }
      await stream.sleep(POLL_MS);
    }
  });
}
