// One error shape for every route ({error: {code, message, field}}), and the mapping from the
// CLI's errors and zod's issues to HTTP statuses: 400 names the field, 404 the missing thing.
import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { z } from 'zod';
import { CliError } from '../cli/connect.js';

export class ApiError extends Error {
  constructor(readonly status: ContentfulStatusCode, readonly code: string, message: string, readonly field?: string) {
    super(message);
  }
}

/** The first issue, as `field: message`, with its dotted path as the field. */
export function invalidBody(error: z.ZodError, where = 'body'): ApiError {
  const issue = error.issues[0]!;
  const field = issue.path.join('.') || where;
  return new ApiError(400, 'invalid_request', `${field}: ${issue.message}`, field);
}

/** Parses `value` with `schema` or throws the 400 naming the field. */
export function parse<T extends z.ZodType>(schema: T, value: unknown, where?: string): z.infer<T> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw invalidBody(parsed.error, where);
  return parsed.data;
}

const STATUS = { 'not-found': 404, conflict: 409, invalid: 400 } as const;

export function errorResponse(err: unknown, c: Context) {
  if (err instanceof ApiError) return c.json({ error: { code: err.code, message: err.message, ...(err.field ? { field: err.field } : {}) } }, err.status);
  if (err instanceof CliError) {
    const field = err.reason === 'invalid' ? /^([A-Za-z][\w.]*): /.exec(err.message)?.[1] : undefined;
    return c.json({ error: { code: err.reason.replace('-', '_'), message: err.message, ...(field ? { field } : {}) } }, STATUS[err.reason]);
  }
  // Hono's own errors (a body over the limit) carry their status.
  const status = (err as { status?: number }).status;
  if (status === 413) return c.json({ error: { code: 'payload_too_large', message: 'request body too large' } }, 413);
  console.error('loraflow api:', err);
  return c.json({ error: { code: 'internal', message: 'internal error: see the server log' } }, 500);
}
