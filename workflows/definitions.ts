// Names shared by the workflow, its activities, the worker and the CLI.
// Imports only what is safe inside the deterministic workflow sandbox.
import { defineSearchAttributeKey } from '@temporalio/common';
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { GpuProgressSignal, PipelineProgress } from '../contract/pipeline.js';

/** GPU stages run on their own task queue, whose worker slots cap concurrent GPU jobs (lib/workers.ts). */
export const gpuTaskQueue = (taskQueue: string): string => `${taskQueue}-gpu`;
/** The activities trainLora and generateImages run there. */
export const GPU_STAGE_ACTIVITIES = ['captionDataset', 'trainOnGpu', 'generateOnGpu'];

export const progressQuery = defineQuery<PipelineProgress>('progress');
export const gpuProgressSignal = defineSignal<[GpuProgressSignal]>('gpuProgress');
/** `loraflow continue`: a run awaiting caption review goes on to train (refused in any other stage). */
export const continueUpdate = defineUpdate<void>('continue');

/** Registered on the server by the stack (`--search-attribute NAME=Keyword`) and by tests. */
export const LoraStageKey = defineSearchAttributeKey('LoraStage', 'KEYWORD');
export const LoraNameKey = defineSearchAttributeKey('LoraName', 'KEYWORD');
export const LoraBaseModelKey = defineSearchAttributeKey('LoraBaseModel', 'KEYWORD');
/** The dataset manifest's sha256: which runs trained on the same images. */
export const LoraDatasetHashKey = defineSearchAttributeKey('LoraDatasetHash', 'KEYWORD');
export const SEARCH_ATTRIBUTES = [LoraStageKey, LoraNameKey, LoraBaseModelKey, LoraDatasetHashKey];
