// Activity inputs are parsed with their zod schema first: a bad field is a non-retryable failure
// that names it, before any work is done.
import { ApplicationFailure } from '@temporalio/activity';
import type { z } from 'zod';

export function parseInput<S extends z.ZodType>(schema: S, raw: unknown): z.output<S> {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw ApplicationFailure.nonRetryable(`invalid input: ${issue.path.join('.') || '(root)'}: ${issue.message}`, 'InvalidInput');
  }
  return parsed.data;
}
