// What a COMPLETED train job's output means to the orchestrator: finished, a segment to continue
// from its checkpoint, or an error (neither a LoRA nor a checkpoint).
import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { isTrainSegment } from '../../activities/train.js';
import type { TrainJobOutput } from '../../contract/gpu-job.js';

const metrics = { steps: 10, finalLoss: 0.1, lossCurve: [0.1], seconds: {}, device: 'cpu' };
const sha = 'a'.repeat(64);

describe('isTrainSegment', () => {
  it('is the end with a LoRA, a segment with a checkpoint, and a non-retryable error with neither', () => {
    expect(isTrainSegment({ step: 10, lora: { sha256: sha, bytes: 5 }, metrics } as TrainJobOutput)).toBe(false);
    expect(isTrainSegment({ step: 10, checkpoint: { sha256: sha, bytes: 5, step: 10 }, metrics } as TrainJobOutput)).toBe(true);
    let err: unknown;
    try {
      isTrainSegment({ step: 10, metrics } as TrainJobOutput);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect(err).toMatchObject({ type: 'GpuOutputInvalid', nonRetryable: true, message: expect.stringMatching(/COMPLETED at step 10 with neither a LoRA nor a checkpoint/) });
  });
});
