// Starts (or finds) a training's deliverWebhooks workflow: one per training, whoever asks first
// (the API for a training it created, the schedule watcher for a scheduled run) starts it.
import type { Client } from '@temporalio/client';

export const deliveryWorkflowId = (trainingId: string) => `webhooks-${trainingId}`;

export async function startDelivery(client: Client, taskQueue: string, trainingId: string): Promise<string> {
  const workflowId = deliveryWorkflowId(trainingId);
  await client.workflow.start('deliverWebhooks', {
    taskQueue,
    workflowId,
    args: [{ trainingId }],
    workflowIdConflictPolicy: 'USE_EXISTING',
    // A delivery that already ran to its end is not run again: its receiver had every event.
    workflowIdReusePolicy: 'REJECT_DUPLICATE',
  }).catch((err: Error) => {
    if (err.name !== 'WorkflowExecutionAlreadyStartedError') throw err;
  });
  return workflowId;
}
