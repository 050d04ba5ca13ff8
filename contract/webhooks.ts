// Training webhooks: the events, what the API stores for a training's webhook, and what each
// delivery recorded (read by `loraflow logs` and the API). Small metadata only.
export const WEBHOOK_EVENTS = ['training.started', 'training.stage_changed', 'training.progress', 'training.published', 'training.skipped', 'training.failed', 'training.cancelled'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENTS)[number];

export interface WebhookEvent {
  type: WebhookEventType;
  trainingId: string;
  stage: string;
  status: string;
  step?: number;
  totalSteps?: number;
  loss?: number;
  error?: string;
  at: string;
}
/** What the last watch saw: the next one reports what changed since. */
export interface WatchSnapshot {
  stage: string;
  step?: number;
  progressAt: number;
}
/** webhooks/<training id>/config.json, written by the API (for a scheduled run, copied from its schedule's by scheduleWebhooks). */
export interface WebhookConfig {
  url: string;
  events: WebhookEventType[];
}
export interface WebhookDelivery {
  seq: number;
  type: WebhookEventType;
  attempts: number;
  delivered: boolean;
  lastStatus?: number;
  lastError?: string;
  at: string;
}
