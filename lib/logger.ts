// One pino logger for loraflow's Node processes, and an adapter that makes it Temporal's worker
// logger. Secrets never reach a log line: known secret fields are censored by path, and every
// string is scrubbed of presigned-URL query strings (they are bearer credentials).
import type { LogLevel, LogMetadata, Logger as TemporalLogger } from '@temporalio/common';
import { type DestinationStream, type Logger, pino } from 'pino';

const SECRET_PATHS = [
  'apiKey', '*.apiKey', 'RUNPOD_API_KEY', '*.RUNPOD_API_KEY', 'AWS_SECRET_ACCESS_KEY', '*.AWS_SECRET_ACCESS_KEY',
  'authorization', '*.authorization', '*.headers.authorization', 'taskToken', '*.taskToken',
  'Authorization', '*.Authorization', '*.headers.Authorization', 'HF_TOKEN', '*.HF_TOKEN',
  'accessToken', '*.accessToken', 'token', '*.token', '*.hub.token',
];

/** Keeps scheme, host and path of every URL; drops the query string where signatures live. */
export const scrubUrls = (text: string) => text.replace(/(https?:\/\/[^\s?"']+)\?[^\s"']*/g, '$1?<redacted>');

/** Bearer credentials and Hugging Face tokens (`hf_…`) written out in free text. */
const scrubTokens = (text: string) => text.replace(/\bBearer\s+[^\s"',]+/g, 'Bearer <redacted>').replace(/\bhf_[A-Za-z0-9]{20,}\b/g, 'hf_<redacted>');
const scrubText = (text: string) => scrubTokens(scrubUrls(text));

function scrub(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return scrubText(value);
  if (value instanceof Error) return { name: value.name, message: scrubText(value.message), stack: value.stack && scrubText(value.stack) };
  if (depth > 6 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, scrub(v, depth + 1)]));
}

export function makeLogger(opts: { name: string; level?: string; destination?: DestinationStream }): Logger {
  return pino(
    {
      name: opts.name,
      level: opts.level ?? 'info',
      redact: { paths: SECRET_PATHS, censor: '<redacted>' },
      formatters: { log: (object) => scrub(object) as Record<string, unknown> },
      hooks: {
        logMethod(args, method) {
          method.apply(this, args.map((a) => scrub(a)) as Parameters<typeof method>);
        },
      },
    },
    opts.destination,
  );
}

const LEVELS: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = { TRACE: 'trace', DEBUG: 'debug', INFO: 'info', WARN: 'warn', ERROR: 'error' };

/** Temporal's Logger interface on top of pino (Runtime.install({ logger })). */
export function temporalLogger(logger: Logger): TemporalLogger {
  return temporalLoggerOf((level, message, meta) => logger[LEVELS[level]]({ ...meta }, message));
}

/** Temporal's Logger interface around one `log` function. */
export function temporalLoggerOf(log: (level: LogLevel, message: string, meta?: LogMetadata) => void): TemporalLogger {
  return {
    log,
    trace: (m, meta) => log('TRACE', m, meta),
    debug: (m, meta) => log('DEBUG', m, meta),
    info: (m, meta) => log('INFO', m, meta),
    warn: (m, meta) => log('WARN', m, meta),
    error: (m, meta) => log('ERROR', m, meta),
  };
}
