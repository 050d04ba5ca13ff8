// What RunPod's client API sends and answers (runpod-python's Endpoint, runpod-sdk), and the two
// seed workers' inputs the gateway understands: seed 000's FluxGym-style request and seed 004's
// `rp_handler` types.
import { z } from 'zod';
import { apiSchemas } from '../schemas.js';

export const GatewayRun = z
  .object({ input: z.record(z.string(), z.unknown()), webhook: z.string().optional(), policy: z.record(z.string(), z.unknown()).optional() })
  .register(apiSchemas, { id: 'GatewayRun', description: "RunPod's request: `input` is a seed 000 request ({character_name, images, trigger_word}) or a seed 004 one ({type, …})." });

export const JobStatus = z.enum(['IN_QUEUE', 'IN_PROGRESS', 'COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT']);
export const GatewayJob = z
  .object({ id: z.string(), status: JobStatus, output: z.unknown().optional(), error: z.string().optional(), delayTime: z.number().optional(), executionTime: z.number().optional() })
  .register(apiSchemas, { id: 'GatewayJob', description: "A job as RunPod's /status answers it." });
export type GatewayJob = z.infer<typeof GatewayJob>;

export const GatewayHealth = z
  .object({
    jobs: z.object({ completed: z.number(), failed: z.number(), inProgress: z.number(), inQueue: z.number(), retried: z.number() }),
    workers: z.object({ idle: z.number(), running: z.number() }),
  })
  .register(apiSchemas, { id: 'GatewayHealth' });

/** Seed 000 (FluxGym-style worker): image URLs are dataset URLs, fetched and checked like any. */
export const FluxGymInput = z.object({
  character_name: z.string().min(1).max(64),
  images: z.array(z.string().url()).min(1).max(200),
  trigger_word: z.string().min(1).max(64),
  steps: z.int().min(1).max(100_000).optional(),
});
export type FluxGymInput = z.infer<typeof FluxGymInput>;

/** Seed 004's types; each is mapped onto a durable operation in rp-handler.ts. */
export const RP_HANDLER_TYPES = ['train', 'train_with_yaml', 'generate', 'health', 'processes', 'process_status', 'lora', 'list_models', 'cancel', 'download', 'upload_training_data', 'bulk_download', 'list_files', 'download_file'] as const;
