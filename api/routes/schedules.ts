// /v1/schedules: cron-triggered retraining, each route the CLI's own function (cli/schedule.ts).
import { Hono } from 'hono';
import { createSchedule, deleteSchedule, listSchedules, pauseSchedule, triggerSchedule, unpauseSchedule } from '../../cli/schedule.js';
import { type ApiDeps, jsonBody } from '../context.js';
import { parse } from '../errors.js';
import { ScheduleCreate, ScheduleId } from '../schemas.js';
import { requestOf } from './trainings.js';

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
      // The CLI's errors name its flags (--cron); here the field is `cron`.
      const created = await createSchedule(client, config, request, { cron: body.cron, overlap: body.overlap, priority: body.priority }).catch((err: Error) => {
        throw Object.assign(err, { message: err.message.replace(/^--cron: /, 'cron: ') });
      });
      return c.json(created, 201);
    })
    .get('/', async (c) => c.json({ schedules: await listSchedules(client) }))
    .post('/:id/pause', action(pauseSchedule, 'paused'))
    .post('/:id/unpause', action(unpauseSchedule, 'active'))
    .post('/:id/trigger', action(triggerSchedule, 'triggered'))
    .delete('/:id', action(deleteSchedule, 'deleted'));
}
