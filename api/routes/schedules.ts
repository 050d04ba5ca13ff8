// /v1/schedules: cron-triggered retraining, each route the CLI's own function (cli/schedule.ts);
// a schedule with a webhook also gets a watcher that starts each of its runs' webhook deliveries.
import { Hono } from 'hono';
import { createSchedule, deleteSchedule, listSchedules, pauseSchedule, triggerSchedule, unpauseSchedule } from '../../cli/schedule.js';
import { type ApiDeps, jsonBody } from '../context.js';
import { parse } from '../errors.js';
import { ScheduleCreate, ScheduleId } from '../schemas.js';
import { requestOf } from './trainings.js';
import { checkWebhook, forgetScheduleWebhooks, startScheduleWebhooks } from './webhooks.js';

export function scheduleRoutes(deps: ApiDeps): Hono {
  const { client, config } = deps;
  const idOf = (raw: string) => parse(ScheduleId, raw, 'id');
  const action = (run: typeof pauseSchedule, done: string) => async (c: { req: { param(k: string): string }; json(v: unknown): Response }) => {
    const scheduleId = idOf(c.req.param('id'));
    await run(client, scheduleId);
    return c.json({ scheduleId, done });
  };
  return new Hono()
    .post('/', async (c) => {
      const body = parse(ScheduleCreate, await jsonBody(c));
      const request = await requestOf(deps, body);
      if (body.webhook) await checkWebhook(config, body.webhook.url);
      // The CLI's errors name its flags (--cron); here the field is `cron`.
      const created = await createSchedule(client, config, request, { cron: body.cron, overlap: body.overlap, priority: body.priority }).catch((err: Error) => {
        throw Object.assign(err, { message: err.message.replace(/^--cron: /, 'cron: ') });
      });
      // After the schedule exists (a 409 must not replace another schedule's webhook); a run it
      // starts meanwhile is still among its recent actions when the watcher first looks.
      const webhooks = body.webhook ? await startScheduleWebhooks(deps, created.scheduleId, body.webhook) : undefined;
      return c.json({ ...created, ...(webhooks ? { webhooks } : {}) }, 201);
    })
    .get('/', async (c) => c.json({ schedules: await listSchedules(client) }))
    .post('/:id/pause', action(pauseSchedule, 'paused'))
    .post('/:id/unpause', action(unpauseSchedule, 'active'))
    .post('/:id/trigger', action(triggerSchedule, 'triggered'))
    .delete('/:id', async (c) => {
      const scheduleId = idOf(c.req.param('id'));
      await deleteSchedule(client, scheduleId);
      await forgetScheduleWebhooks(deps, scheduleId);
      return c.json({ scheduleId, done: 'deleted' });
    });
}
