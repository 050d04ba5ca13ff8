// The `loraflow` CLI. Every command takes --json; configuration comes from the environment (lib/config.ts).
import { Command } from 'commander';
import { describeFamilyDefaults } from './contract/families.js';
import { GENERATE_DEFAULTS as G, TRAINING_DEFAULTS as D } from './contract/gpu-job.js';
import type { PublishedLora } from './contract/pipeline.js';
import { type Config, loadConfig } from './lib/config.js';
import { formatCost } from './lib/pricing.js';
import { makeStorage } from './lib/s3.js';
import { CliError, connect, webUiLink } from './cli/connect.js';
import { cancel, download, list, publishedOf, report, status } from './cli/inspect.js';
import { buildGenerateRequest, downloadGeneration, GENERATE_FLAG, parseLoraRef, parseSize, startGeneration } from './cli/generate.js';
import { describeLogs, pipelineLogs } from './cli/logs.js';
import {
  backfillSchedule,
  createSchedule,
  deleteSchedule,
  describeScheduleRow,
  listSchedules,
  OVERLAP,
  type Overlap,
  pauseSchedule,
  triggerSchedule,
  unpauseSchedule,
} from './cli/schedule.js';
import { continueRun, pullCaptions, pushCaptions } from './cli/captions.js';
import { describeEstimate, estimateRun } from './cli/estimate.js';
import { buildExtendRequest, buildRequest, parseInitFrom, startTraining } from './cli/train.js';
import { added, collect, int, isoDate, ITERATE_HELP, num, priority } from './cli/flags.js';
import { progressDetails, watch } from './cli/watch.js';

const print = (json: boolean, value: unknown, text: string) => console.log(json ? JSON.stringify(value, null, 2) : text);

const program = new Command('loraflow')
  .description('Durable LoRA training: Temporal pipelines, RunPod GPU workers, S3 storage.')
  .showHelpAfterError()
  .addHelpText('after', ITERATE_HELP);

/** The dataset and training flags `train` and `schedule create` share. */
function trainingFlags(command: Command): Command {
  return command
    .requiredOption('--name <name>', 'LoRA name (lowercase letters, digits, "-")')
    .requiredOption('--images <source>', 'dataset: a directory or .zip of images, an https:// URL of a .zip, or s3://bucket/prefix')
    .requiredOption('--trigger <word>', 'trigger word put in front of every caption')
    .option('--steps <n>', `training steps (default by base model family: ${describeFamilyDefaults('steps')})`, int)
    .option('--rank <n>', `LoRA rank (default: ${describeFamilyDefaults('rank')})`, int)
    .option('--alpha <n>', 'LoRA alpha (default: the rank)', num)
    .option('--lr <x>', `learning rate (default: ${describeFamilyDefaults('learningRate')})`, num)
    .option('--batch-size <n>', `batch size (default: ${D.batchSize})`, int)
    .option('--resolution <px>', "training size in pixels (default: the base model's)", int)
    .option('--seed <n>', `random seed (default: ${D.seed})`, int)
    .option('--base-model <name>', 'base model known to the GPU worker (default: $LORAFLOW_BASE_MODEL)')
    .option('--quantize-base <int8|fp8>', 'hold the frozen base model quantized (FLUX on 24 GB cards; fp8 needs an Ada or Hopper GPU)')
    .option('--format <layout>', 'key layout of the .safetensors: diffusers or kohya (ComfyUI, A1111)', 'diffusers')
    .option('--sample-every <n>', 'render a sample image every n steps (default: only after the last)', int)
    .option('--sample-prompt <text>', 'prompt of the samples, repeatable (one image per prompt per sample step, a fixed seed per prompt); "[trigger]" stands for the trigger word (default: the trigger word alone)', (v: string, all: string[] = []) => [...all, v])
    .option('--save-every <n>', 'also keep the LoRA every n steps, published as lora-step<n>.safetensors (`loraflow promote` picks one; default: only the final one)', int)
    .option('--init-from <name@version>', "start from a published LoRA's weights (same base model and rank): NAME@VERSION, NAME@latest, or latest (this name's newest; a first run starts fresh)")
    .option('--captioner <name>', 'captioner for images without a sidecar .txt, one the GPU worker has (default: $LORAFLOW_CAPTIONER)')
    .option('--caption-prompt <text>', 'text the captioner continues, for captioners that take one (BLIP: "a photo of")')
    .option('--caption-prefix <text>', 'put after the trigger word in front of every caption')
    .option('--caption-suffix <text>', 'put at the end of every caption')
    .option('--caption-dropout <p>', 'probability that an image trains with the empty caption (default: 0)', num)
    .option('--budget <amount>', 'most the run may spend on GPU time, in the price currency of LORAFLOW_GPU_PRICES: past it the GPU job is cancelled and the run fails (default: no cap)', num)
    .option('--gpu <type>', 'pin the run to endpoints of this GPU type (LORAFLOW_ENDPOINTS), e.g. "A100" (default: the first endpoint that fits)')
    .option('--hub-existing-repo', 'let the Hugging Face push write into an existing repo loraflow did not create (it replaces README.md and lora.safetensors and deletes samples/ there)');
}

const requestFrom = (o: any, config: Config) => {
  const captions = { captioner: o.captioner, prompt: o.captionPrompt, prefix: o.captionPrefix, suffix: o.captionSuffix, ...(o.reviewCaptions ? { review: true as const } : {}) };
  return buildRequest(
    {
      name: o.name,
      images: o.images,
      budget: o.budget,
      ...(o.gpu ? { gpu: o.gpu } : {}),
      ...(o.hubExistingRepo ? { hub: { allowExistingRepo: true as const } } : {}),
      ...(o.initFrom ? { initFrom: parseInitFrom(o.initFrom, o.name) } : {}),
      ...(Object.values(captions).some((v) => v !== undefined) ? { captions } : {}),
      training: {
        triggerWord: o.trigger,
        baseModel: o.baseModel ?? config.LORAFLOW_BASE_MODEL,
        format: o.format,
        sampleEvery: o.sampleEvery,
        samplePrompts: o.samplePrompt,
        saveEvery: o.saveEvery,
        params: { steps: o.steps, rank: o.rank, alpha: o.alpha, learningRate: o.lr, batchSize: o.batchSize, resolution: o.resolution, seed: o.seed, quantizeBase: o.quantizeBase, captionDropout: o.captionDropout },
      },
    },
    config,
  );
};

/** Starts (or attaches to) a run and prints it; with --wait, follows it until published. */
async function startAndReport(o: { json?: boolean; wait?: boolean; priority?: number }, config: Config, request: Awaited<ReturnType<typeof requestFrom>>) {
  const client = await connect(config);
  const { handle, attached } = await startTraining(client, config, request, { priority: o.priority });
  const info = { workflowId: handle.workflowId, attached, webUi: webUiLink(config, handle.workflowId) };
  if (!o.json) console.error(`${attached ? 'attached to existing' : 'started'} pipeline ${handle.workflowId}\n  Web UI: ${info.webUi}`);
  if (!o.wait) return print(!!o.json, info, handle.workflowId);
  const published = await watch(client, handle); // progress goes to stderr, so --json stdout stays clean
  print(!!o.json, { ...info, published }, published.uri);
}

trainingFlags(program.command('train').description('train a LoRA on a directory or .zip of images (sidecar .txt files are used as captions)'))
  .option('--review-captions', 'pause after captioning (stage awaiting-captions) for `loraflow captions pull|push` and `loraflow continue`')
  .option('--priority <1-5>', 'GPU queue priority when more runs wait than LORAFLOW_MAX_GPU_JOBS allow: 1 goes first', priority, 3)
  .option('--wait', 'follow progress and exit when published (exit 1 on failure)')
  .option('--dry-run', 'print the estimated GPU time and cost on each endpoint the run may use, and whether --budget fits; start nothing (a run over its budget is refused anyway)')
  .option('--json', 'machine-readable output')
  .action(async (o) => {
    const config = loadConfig();
    const request = await requestFrom(o, config);
    if (o.dryRun) {
      const estimate = await estimateRun(makeStorage(config), config, request);
      return print(o.json, estimate, describeEstimate(estimate));
    }
    await startAndReport(o, config, request);
  });

program
  .command('extend <id>')
  .description("continue a published run's training from its final checkpoint into a new version (same images, captions and settings; no step redone)")
  .requiredOption('--steps <+n>', 'steps to add, e.g. +200', added)
  .option('--budget <amount>', "most the new run may spend on GPU time (default: the parent run's budget)", num)
  .option('--priority <1-5>', 'GPU queue priority (1 goes first)', priority, 3)
  .option('--wait', 'follow progress and exit when published (exit 1 on failure)')
  .option('--json', 'machine-readable output')
  .action(async (id: string, o) => {
    const config = loadConfig();
    const parent = await publishedOf(await connect(config), id, 'extend');
    await startAndReport(o, config, await buildExtendRequest(config, parent, o.steps, o.budget));
  });

const captions = program.command('captions').description('the caption review of a run started with --review-captions (stage awaiting-captions)');

captions
  .command('pull <id>')
  .description("write the run's captions as <image>.txt files (trigger word first) to edit")
  .requiredOption('--out <dir>', 'directory to write into')
  .option('--json', 'machine-readable output')
  .action(async (id: string, o) => {
    const config = loadConfig();
    const pulled = await pullCaptions(await connect(config), config, id, o.out);
    print(o.json, pulled, `${pulled.files} captions in ${pulled.dir}; edit them, then \`loraflow captions push ${id} ${pulled.dir}\` and \`loraflow continue ${id}\``);
  });

captions
  .command('push <id> <dir>')
  .description("replace the run's captions with the <image>.txt files in dir (all checked first; the trigger word is kept first)")
  .option('--json', 'machine-readable output')
  .action(async (id: string, dir: string, o) => {
    const config = loadConfig();
    const pushed = await pushCaptions(await connect(config), config, id, dir);
    print(o.json, pushed, `${pushed.changed} of ${pushed.images} captions changed; \`loraflow continue ${id}\` trains on them`);
  });

program
  .command('continue <id>')
  .description('let a run awaiting caption review go on to train on its (edited) captions')
  .option('--json', 'machine-readable output')
  .action(async (id: string, o) => {
    await continueRun(await connect(loadConfig()), id);
    print(o.json, { workflowId: id, continued: true }, `${id}: continued`);
  });

/** The Hugging Face push, when the worker has HF_TOKEN. */
const hubLine = (hub: PublishedLora['hub']) =>
  !hub ? '' : hub.outcome === 'failed' ? `\n  hub: not pushed: ${hub.error}` : `\n  hub: ${hub.outcome} to ${hub.url ?? hub.repo}`;

program
  .command('status <id>')
  .description("what a pipeline is doing (waiting for GPU capacity, cold start, crashing worker, training, resuming, publishing), its GPU job, step and loss")
  .option('--json', 'machine-readable output')
  .action(async (id: string, o) => {
    const s = await status(await connect(loadConfig()), id);
    const cost = s.result?.usage ? `\n  GPU: ${s.result.usage.gpuSeconds.toFixed(1)} s in ${s.result.usage.jobs.length} jobs, ${formatCost(s.result.usage.cost)} at $${s.result.usage.pricePerHour}/GPU-hour` : '';
    const extra = s.result
      ? `\n  published: ${s.result.uri}${cost}${s.result.reportUri ? `\n  report: ${s.result.reportUri} (\`loraflow report ${id}\`)` : ''}${hubLine(s.result.hub)}`
      : s.skipped
        ? `\n  skipped: dataset unchanged since version ${s.skipped.latestVersion} (${s.skipped.latestUri})`
        : s.error
          ? `\n  error: ${s.error}`
          : '';
    print(o.json, s, `${id}: ${s.status} ${s.state}${extra}\n  ${progressDetails(s)}`);
  });

program
  .command('logs <id>')
  .description("each GPU job of a pipeline as the endpoint reports it: status, worker, queue wait, run time, progress, errors")
  .option('--json', 'machine-readable output')
  .action(async (id: string, o) => {
    const config = loadConfig();
    const logs = await pipelineLogs(await connect(config), config, id);
    print(o.json, logs, describeLogs(logs));
  });

program
  .command('cancel <id>')
  .description('cancel a pipeline and its GPU job; returns when both are stopped')
  .option('--json', 'machine-readable output')
  .action(async (id: string, o) => {
    const final = await cancel(await connect(loadConfig()), id);
    print(o.json, { workflowId: id, status: final }, `${id}: ${final}`);
  });

program
  .command('list')
  .description('recent pipelines')
  .option('--json', 'machine-readable output')
  .action(async (o) => {
    const rows = await list(await connect(loadConfig()));
    const text = rows.map((r) => `${r.workflowId}  ${r.status.padEnd(10)} ${r.stage.padEnd(9)} ${r.started}`).join('\n') || 'no pipelines yet';
    print(o.json, rows, text);
  });

program
  .command('report <id>')
  .description("write a published pipeline's report (loss curve, samples, parameters, dataset, GPU time and cost) into a directory")
  .option('--out <dir>', 'directory to write into (default: ./report-<id>)')
  .option('--json', 'machine-readable output')
  .action(async (id: string, o) => {
    const config = loadConfig();
    const written = await report(await connect(config), config, id, o.out ?? `report-${id}`);
    print(o.json, written, written.index);
  });

program
  .command('download <id>')
  .description("download a published pipeline's lora.safetensors and metadata.json")
  .requiredOption('--out <dir>', 'directory to write into')
  .option('--json', 'machine-readable output')
  .action(async (id: string, o) => {
    const config = loadConfig();
    const files = await download(await connect(config), config, id, o.out);
    print(o.json, files, `${files.lora}\n${files.metadata}`);
  });

program
  .command('generate')
  .description('render images with a published LoRA as a workflow with one GPU job; the PNGs and a contact sheet are stored under the LoRA version')
  .argument('<name>', 'the LoRA: NAME (its latest version) or NAME@VERSION, either with :WEIGHT (default 1)')
  .requiredOption('--prompt <text>', 'a prompt (repeat for several)', collect)
  .option('--n <count>', `images per prompt; image i of every prompt uses seed + i (default: ${G.n})`, int)
  .option('--seed <n>', `first seed: the same seed and parameters give the same images (default: ${G.seed})`, int)
  .option('--steps <n>', `denoising steps (default: ${G.steps})`, int)
  .option('--guidance <x>', "guidance scale (default: the pipeline's)", num)
  .option('--size <WxH>', "image size, e.g. 512x768 (default: the base model's native size)")
  .option('--lora <ref>', 'another LoRA applied too, NAME[@VERSION][:WEIGHT] (repeat for several; same base model)', collect)
  .option('--negative <text>', 'negative prompt (SD, SDXL)')
  .option('--budget <amount>', 'most the generation may spend on GPU time, in the price currency of LORAFLOW_GPU_PRICES (default: no cap)', num)
  .option('--out <dir>', 'download the images, contact sheet and generation.json into this directory (implies --wait)')
  .option('--wait', 'wait until the images are stored (exit 1 on failure)')
  .option('--json', 'machine-readable output')
  .action(async (lora: string, o) => {
    const config = loadConfig();
    const request = buildGenerateRequest(
      {
        loras: [parseLoraRef(lora, 'NAME'), ...((o.lora ?? []) as string[]).map((l) => parseLoraRef(l, '--lora'))],
        prompts: o.prompt,
        ...(o.negative !== undefined ? { negativePrompt: o.negative } : {}),
        n: o.n,
        seed: o.seed,
        steps: o.steps,
        guidance: o.guidance,
        ...(o.size ? parseSize(o.size) : {}),
        budget: o.budget,
      },
      GENERATE_FLAG,
    );
    const client = await connect(config);
    const handle = await startGeneration(client, config, request);
    const info = { workflowId: handle.workflowId, webUi: webUiLink(config, handle.workflowId) };
    if (!o.json) console.error(`started generation ${handle.workflowId}\n  Web UI: ${info.webUi}`);
    if (!o.wait && !o.out) return print(o.json, info, handle.workflowId);
    const result = await handle.result().catch((err: unknown) => {
      const cause = err instanceof Error && err.cause instanceof Error ? (err.cause.cause instanceof Error ? err.cause.cause : err.cause) : err;
      throw new CliError(`generation ${handle.workflowId} failed: ${cause instanceof Error ? cause.message : String(cause)}`);
    });
    const files = o.out ? await downloadGeneration(config, result, o.out) : undefined;
    print(o.json, { ...info, result, ...(files ? { files } : {}) }, files ? files.join('\n') : `${result.contactSheet.uri}\n  ${result.images.length} images at ${result.uri}`);
  });

program
  .command('promote <name@version>')
  .description("make a kept step (--save-every) the version's LoRA and the name's latest, recorded in metadata.json; the final LoRA stays as lora-step<final>.safetensors (promote the final step to undo)")
  .requiredOption('--step <n>', 'the step whose LoRA to promote (see the report\'s sample grid)', int)
  .option('--json', 'machine-readable output')
  .action(async (ref: string, o) => {
    const { promote } = await import('./cli/promote.js');
    const done = await promote(makeStorage(loadConfig()), ref, o.step);
    print(o.json, done, `${done.name}@${done.version}: step ${done.step} is its LoRA now${done.latest ? ' (and latest)' : ''}\n  ${done.uri}\n  final LoRA (step ${done.final.step}): ${done.final.uri}`);
  });

const schedule = program.command('schedule').description('cron-triggered retraining: a run retrains only when the dataset changed since the last published version');

trainingFlags(schedule.command('create').description('retrain a LoRA on a cron schedule (Temporal Schedule `retrain-<name>`)'))
  .requiredOption('--cron <expr>', 'when to run, a cron expression in UTC, e.g. "0 3 * * *"')
  .option('--overlap <policy>', `when a run is still going at the next time: ${Object.keys(OVERLAP).join(', ')}`, 'skip')
  .option('--priority <1-5>', 'GPU queue priority of the scheduled runs (1 goes first); below manual runs by default', priority, 4)
  .option('--json', 'machine-readable output')
  .action(async (o) => {
    if (!(o.overlap in OVERLAP)) throw new CliError(`--overlap: expected one of ${Object.keys(OVERLAP).join(', ')}, got ${JSON.stringify(o.overlap)}`);
    const config = loadConfig();
    const request = await requestFrom(o, config);
    const created = await createSchedule(await connect(config), config, request, { cron: o.cron, overlap: o.overlap as Overlap, priority: o.priority });
    print(o.json, created, `created schedule ${created.scheduleId}`);
  });

schedule
  .command('list')
  .description("schedules: state, next run, recent runs and their outcome (published, skipped: dataset unchanged, failed)")
  .option('--json', 'machine-readable output')
  .action(async (o) => {
    const rows = await listSchedules(await connect(loadConfig()));
    print(o.json, rows, rows.map(describeScheduleRow).join('\n') || 'no schedules');
  });

const scheduleAction = (name: string, description: string, run: (client: Awaited<ReturnType<typeof connect>>, id: string) => Promise<void>, done: string) =>
  schedule
    .command(`${name} <id>`)
    .description(description)
    .option('--json', 'machine-readable output')
    .action(async (id: string, o) => {
      await run(await connect(loadConfig()), id);
      print(o.json, { scheduleId: id, [name]: true }, `${id}: ${done}`);
    });
scheduleAction('pause', 'pause a schedule (no runs until unpaused)', pauseSchedule, 'paused');
scheduleAction('unpause', 'resume a paused schedule', unpauseSchedule, 'active');
scheduleAction('trigger', 'run a schedule now (its overlap policy applies)', triggerSchedule, 'triggered');
scheduleAction('delete', 'delete a schedule (runs already started go on)', deleteSchedule, 'deleted');

schedule
  .command('backfill <id>')
  .description('take the runs a schedule would have taken between two times')
  .requiredOption('--from <iso>', 'start time, e.g. 2026-01-01T00:00:00Z', isoDate)
  .requiredOption('--to <iso>', 'end time', isoDate)
  .option('--json', 'machine-readable output')
  .action(async (id: string, o) => {
    await backfillSchedule(await connect(loadConfig()), id, o.from, o.to);
    print(o.json, { scheduleId: id, from: o.from, to: o.to }, `${id}: backfilling ${o.from.toISOString()} .. ${o.to.toISOString()}`);
  });

program
  .command('serve')
  .description('the HTTP API (/v1), the RunPod-shaped gateway (/v2) and /openapi.json, until Ctrl-C; every route needs a bearer token whose sha256 is in LORAFLOW_API_TOKENS')
  .option('--host <address>', 'address to bind (default: $LORAFLOW_API_HOST, 127.0.0.1)')
  .option('--port <n>', 'port to listen on (default: $LORAFLOW_API_PORT, 8400)', int)
  .option('--json', "print the server's addresses as one JSON line on stdout once it listens")
  .action(async (o) => {
    const { runServe } = await import('./api/serve.js');
    await runServe({ host: o.host, port: o.port, json: o.json });
  });

program
  .command('dev')
  .description('run the embedded local stack in the foreground (Temporal + Web UI, S3, RunPod endpoint, workers); Ctrl-C stops it')
  .option('--json', "print the stack's addresses as one JSON line on stdout once it is up")
  .action(async (o) => {
    const { runDev } = await import('./stack/dev.js');
    await runDev({ json: o.json });
  });

program
  .command('runpod-local')
  .description('a local RunPod serverless endpoint running a worker command (see `loraflow runpod-local --help`)')
  .helpOption(false)
  .allowUnknownOption()
  .allowExcessArguments()
  .action(async () => {
    // Its own parser reads process.argv from index 2: hand it everything after the subcommand.
    process.argv.splice(2, process.argv.indexOf('runpod-local') - 1);
    await import('./runpod-local/cli.js');
  });

program.parseAsync().catch((err: unknown) => {
  console.error(err instanceof CliError || (err instanceof Error && err.message.startsWith('config:')) ? `loraflow: ${err.message}` : err);
  process.exit(1);
});
