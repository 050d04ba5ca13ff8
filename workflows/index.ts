// Entry point the worker bundles (workflowsPath).
export { trainLora } from './train-lora.js';
export type { PublishingTrainLora } from './train-lora.js';
export { generateImages } from './generate.js';
export { janitor } from './janitor.js';
export { deliverWebhooks } from './webhooks.js';
export { scheduleWebhooks } from './schedule-webhooks.js';
export { gpuSlots } from './gpu-slots.js';
