// The one honest line a pipeline's state reads as, for `loraflow status`, the progress memo and
// the report. Type-only imports: the workflow sandbox uses it.
import type { PipelineProgress, PublishedLora, Stage } from './pipeline.js';

const STAGE_TEXT: Record<Stage, string> = {
  queued: 'queued',
  ingest: 'ingesting the dataset',
  caption: 'captioning',
  'awaiting-captions': 'awaiting caption review',
  train: 'training',
  publish: 'publishing',
  published: 'published',
  skipped: 'skipped: dataset unchanged',
  failed: 'failed',
  cancelled: 'cancelled',
};

/** One honest line for a pipeline: never just "IN_QUEUE". Pure: used by the workflow (memo) and the CLI. */
export function describeState(p: PipelineProgress): string {
  if (p.stage === 'published' && p.result) return `published ${p.result.version} (${p.result.uri})${skippedText(p.result.skippedFiles)}`;
  if (p.stage === 'skipped' && p.skipped) return `skipped: dataset unchanged since version ${p.skipped.latestVersion}`;
  if (p.stage === 'failed' || p.stage === 'cancelled') return p.error ? `${p.stage}: ${p.error}` : p.stage;
  if (p.stage === 'awaiting-captions') {
    return `awaiting caption review since ${p.stageStartedAt['awaiting-captions'] ?? '?'}: \`loraflow captions pull\`, edit, \`loraflow captions push\`, then \`loraflow continue\``;
  }
  if (p.stage !== 'caption' && p.stage !== 'train') return STAGE_TEXT[p.stage];
  const where = p.gpuEndpoint ? ` on ${p.gpuEndpoint}${p.gpuMoved ? `, moved: ${p.gpuMoved}` : ''}` : '';
  const job = p.gpuJobId ? ` (GPU job ${p.gpuJobId}${where})` : where ? ` (${where.slice(1)})` : '';
  const why = p.gpuDetail ? `: ${p.gpuDetail}` : '';
  switch (p.gpuState) {
    case 'waiting-for-capacity':
      return `${p.stage}: waiting for GPU capacity${why}${job}`;
    case 'cold-starting':
      return `${p.stage}: GPU worker cold-starting${job}`;
    case 'worker-crashing':
      return `${p.stage}: GPU worker crashing${why}${job}`;
    case 'resuming':
      return `${p.stage}: GPU worker lost, resuming from the last checkpoint${why}${job}`;
    case 'queued':
      return `${p.stage}: GPU job queued${job}`;
    case 'running': {
      const steps = p.step !== undefined && p.totalSteps ? ` step ${p.step}/${p.totalSteps}` : '';
      return `${STAGE_TEXT[p.stage]}${p.phase && p.phase !== 'training' && p.phase !== 'captioning' ? ` (${p.phase})` : ''}${steps}${job}`;
    }
    default:
      return `${STAGE_TEXT[p.stage]}${job}`;
  }
}

/** "; 2 dataset files skipped: a.heic (why); b.pdf (why)": every skipped file the result names. */
function skippedText(skipped: PublishedLora['skippedFiles']): string {
  if (!skipped?.count) return '';
  const named = skipped.files.map((f) => `${f.name} (${f.reason})`).join('; ');
  const more = skipped.count > skipped.files.length ? `; and ${skipped.count - skipped.files.length} more` : '';
  return `; ${skipped.count} dataset file${skipped.count === 1 ? '' : 's'} skipped: ${named}${more}`;
}
