"""loraflow GPU worker: a stateless RunPod serverless handler.

Jobs (`job["input"]`) are validated against contract/schema/gpu-job-input.schema.json, which
is generated from contract/gpu-job.ts (the reference for every field):

  caption: {"task": "caption", "triggerWord", "images": [{"id", "url"}], "captioner"?, "prompt"?, "claim"?, "result"?}
    -> {"captioner", "captions": [{"id", "caption": "<trigger>, ..."}]}
  train:   {"task": "train", "baseModel", "triggerWord", "images": [{"id", "url", "caption"}],
            "params": {...}, "output": {"loraUrl"}, "format", "claim"?, "result"?, "stopAtStep"?,
            "stopAfterSeconds"?, "checkpoint"?: {"url", "readUrl"?, "everySteps", "finalUrl"?},
            "resume"?: {"url"}, "initFrom"?: {"url", "kind"}, "samples"?: {"prompts", "urls": {"<step>": [url per prompt]}},
            "saves"?: {"urls": {"<step>": url}}, "filesTag"?}
    -> {"step", "lora"? (only when finished), "checkpoint"?, "finalCheckpoint"?, "samples"?, "saves"?, "metrics"}
  generate: {"task": "generate", "baseModel", "loras": [{"url", "sha256", "weight"}], "prompts",
            "negativePrompt"?, "n", "seed", "steps", "guidance"?, "width"?, "height"?,
            "output": {"images": [url per prompt x n], "contactSheet"}, "claim"?, "result"?}
    -> {"images": [{"prompt", "seed", "sha256", "bytes"}], "contactSheet", "metrics"}

Every kind claims its work first ("claim": {"url", "readUrl", "attemptUrls"}: a job the service
retries under its id continues, a duplicate stops) and PUT their output to "result.url" before
returning it, so it outlives RunPod's result retention.
Failures return {"error": "[OOM|INPUT|TRANSIENT|INTERNAL|CLAIMED|CRASHED] message"} (see errors.py).
Importing this module is cheap: torch and the models load on the first job that needs them
(frozen models then stay cached per name for the life of the worker).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # sibling modules, wherever we run from
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models are baked in; never reach for the Hub
# The SDK's default DEBUG level logs job payloads, and ours carry presigned URLs (credentials).
os.environ.setdefault("RUNPOD_LOG_LEVEL", "INFO")

import runpod  # noqa: E402

import settings  # noqa: E402
from contract import check_train_input, validate_input, validate_output  # noqa: E402
from errors import error_message, redact  # noqa: E402
from progress import Progress  # noqa: E402
from stop import StopSignal, sigterm_stops  # noqa: E402

log = logging.getLogger("loraflow.worker")


def _free_memory() -> None:
    gc.collect()
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def run_job(job: dict[str, Any], stop: StopSignal | None = None) -> dict[str, Any]:
    """One job, start to end, in the calling thread; `stop` ends a training early (with a checkpoint)."""
    progress = Progress(lambda payload: runpod.serverless.progress_update(job, payload))
    workdir = Path(tempfile.mkdtemp(prefix="loraflow-job-", dir=settings.load().work_dir))
    try:
        job_input = validate_input(job.get("input"))
        task = job_input["task"]
        import models

        models.check_cuda(settings.load().require_cuda)
        if task == "train":
            check_train_input(job_input)
        import transfer

        if "claim" in job_input:  # first, before any GPU time is spent
            attempt = transfer.claim(job_input["claim"], str(job.get("id", "")))
            if attempt > 0:
                log.warning("job %s: start %d (the service retried it after its worker was lost)", job.get("id", "?"), attempt + 1)
        if task == "caption":
            from caption import run_caption

            output = run_caption(job_input, workdir, progress)
        elif task == "generate":
            from generate import run_generate

            output = run_generate(job_input, workdir, progress, stop)
        else:
            from train_lora import run_train

            output = run_train(job_input, workdir, progress, stop)
        validate_output(task, output)
        if "result" in job_input:
            try:
                transfer.put_json(job_input["result"]["url"], output, "result.url upload")
            except Exception as exc:  # the result still goes back through RunPod
                log.warning("job %s: result not stored (%s); it lives only as long as RunPod keeps it", job.get("id", "?"), error_message(exc))
        return output
    except Exception as exc:
        message = error_message(exc)
        log.error("job %s failed: %s", job.get("id", "?"), message)
        if message.startswith("[INTERNAL]"):
            log.error("%s", redact(traceback.format_exc()))
        return {"error": message}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if "warm" in sys.modules:  # a train or generate job ran: its adapters leave the kept denoiser
            sys.modules["warm"].clean()
        _free_memory()


async def handler(job: dict[str, Any]) -> dict[str, Any]:
    """The SDK's entry point. The job runs in a thread so that the SDK's event loop stays free to
    notice a cancel (it cancels this coroutine) and SIGTERM; both become a StopSignal: training
    stops at the next step boundary, uploads a checkpoint, and only then is the job let go."""
    stop = StopSignal()
    with sigterm_stops(stop):
        work = asyncio.ensure_future(asyncio.to_thread(run_job, job, stop))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            log.warning("job %s cancelled: stopping at the next step boundary (checkpoint first)", job.get("id", "?"))
            stop.set("cancelled")
            while not work.done():
                try:
                    await asyncio.wait([work])
                except asyncio.CancelledError:  # cancelled again: still let the checkpoint finish
                    pass
            raise


if __name__ == "__main__":
    logging.basicConfig(level=settings.load().log_level, format="%(levelname)s %(name)s: %(message)s")
    runpod.serverless.start({"handler": handler})
