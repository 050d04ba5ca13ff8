"""Validation against the JSON Schemas generated from contract/gpu-job.ts.

The schema directory is settings.contract_dir (default: ../contract/schema next to this file,
which is also where Dockerfile.gpu puts it).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker

import settings
from errors import InputError, JobError

TASKS = ("caption", "train", "generate")
OUTPUT_SCHEMAS = {"caption": "caption-job-output", "train": "train-job-output", "generate": "generate-job-output"}


def schema_dir() -> Path:
    return settings.load().contract_dir


@lru_cache(maxsize=None)
def load_schema(name: str, directory: str) -> dict[str, Any]:
    return json.loads((Path(directory) / f"{name}.schema.json").read_text(encoding="utf-8"))


# jsonschema's own "uri" check needs an extra package; this one is cheap and stricter where
# it matters: the worker can only fetch http(s) URLs with a host.
_formats = FormatChecker(formats=())


@_formats.checks("uri", raises=ValueError)
def _is_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not any(c.isspace() for c in value)


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=_formats)


def _first_error(validator: Draft202012Validator, instance: Any) -> str | None:
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return None
    err = errors[0]
    path = ".".join(str(p) for p in err.absolute_path) or "(root)"
    message = err.message
    if isinstance(err.instance, str) and ("://" in err.instance or len(err.instance) > 60):
        # Never echo URLs (their query string is a credential) or long captions back.
        message = message.replace(repr(err.instance), "value")
    message = message if len(message) <= 200 else message[:197] + "..."
    return f"{path}: {message}"


def validate_input(job_input: Any) -> dict[str, Any]:
    """Raise InputError naming the offending field path (e.g. `images.3.url`)."""
    schema = load_schema("gpu-job-input", str(schema_dir()))
    if not isinstance(job_input, dict):
        raise InputError("(root): job input must be an object")
    task = job_input.get("task")
    # The schema is a oneOf discriminated by `task`: validate against the matching branch so
    # the error names the real field instead of "not valid under any of the given schemas".
    branch = next(
        (b for b in schema["oneOf"] if b.get("properties", {}).get("task", {}).get("const") == task),
        None,
    )
    if branch is None:
        raise InputError(f"task: must be one of {', '.join(TASKS)}")
    problem = _first_error(_validator({**branch, "$schema": schema.get("$schema")}), job_input)
    if problem:
        raise InputError(problem)
    return job_input


def validate_output(task: str, output: dict[str, Any]) -> None:
    """A worker bug, not the caller's fault, if our own result breaks the contract."""
    schema = load_schema(OUTPUT_SCHEMAS[task], str(schema_dir()))
    problem = _first_error(_validator(schema), output)
    if problem:
        raise JobError(f"worker produced an invalid {task} result: {problem}")


def validate_progress(progress: dict[str, Any]) -> None:
    problem = _first_error(_validator(load_schema("gpu-progress", str(schema_dir()))), progress)
    if problem:
        raise JobError(f"invalid progress payload: {problem}")


def check_train_input(job_input: dict[str, Any]) -> None:
    """What the schema cannot say about a train job; checked before the claim and any work."""
    steps = job_input["params"]["steps"]
    if ("stopAtStep" in job_input or "stopAfterSeconds" in job_input) and "checkpoint" not in job_input:
        raise InputError("checkpoint: required when stopAtStep or stopAfterSeconds can end the job before params.steps")
    samples = job_input.get("samples") or {}
    if len(set(samples.get("prompts", []))) != len(samples.get("prompts", [])):
        raise InputError("samples.prompts: each prompt once (a prompt's samples are told apart by its text)")
    for key, urls in samples.get("urls", {}).items():
        if int(key) > steps:
            raise InputError(f"samples.urls.{key}: step {key} is after params.steps ({steps})")
        if len(urls) != len(samples["prompts"]):
            raise InputError(f"samples.urls.{key}: {len(urls)} URLs for {len(samples['prompts'])} prompts (one per prompt)")
    for key in (job_input.get("saves") or {}).get("urls", {}):
        if int(key) > steps:
            raise InputError(f"saves.urls.{key}: step {key} is after params.steps ({steps})")
    if "checkpoint" in job_input and "resume" in job_input:
        if urlsplit(job_input["checkpoint"]["url"])[:3] == urlsplit(job_input["resume"]["url"])[:3]:
            raise InputError("checkpoint.url: must not overwrite the checkpoint this job resumes from (resume.url)")
