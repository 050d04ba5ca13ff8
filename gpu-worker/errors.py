"""Error classes and the "[CLASS] message" strings the orchestrator parses.

The TypeScript side matches `^\\[(OOM|INPUT|TRANSIENT|INTERNAL|CLAIMED|CRASHED)\\] ` to decide on retries:
  OOM       out of memory; retrying the same config will fail again
  INPUT     bad job input (schema, parameter, image); retrying is pointless
  TRANSIENT network/storage trouble; retrying may succeed
  INTERNAL  anything else (a bug or a broken worker image)
  CLAIMED   another job already claimed this work; this one stopped before any GPU work
  CRASHED   this job was started more often than its attempt markers allow (its workers keep dying)
"""

from __future__ import annotations

import re

MAX_MESSAGE_CHARS = 800

# A presigned URL's query string is a bearer credential: never let it reach a log or a result.
# urllib3 messages name just the path ("with url: /key?X-Amz-..."), so paths count too.
_URL_QUERY = re.compile(r"((?:https?://|/)[^\s?#'\"<>]*)\?[^\s'\"<>]*", re.IGNORECASE)


class JobError(Exception):
    error_class = "INTERNAL"


class InputError(JobError):
    error_class = "INPUT"


class TransientError(JobError):
    error_class = "TRANSIENT"


class OutOfMemory(JobError):
    error_class = "OOM"


class AlreadyClaimed(JobError):
    error_class = "CLAIMED"


class StartedTooOften(JobError):
    error_class = "CRASHED"


def redact(text: str) -> str:
    """Drop the query string (signature, credential, expiry) from every URL in `text`."""
    return _URL_QUERY.sub(r"\1?<redacted>", text)


def classify(exc: BaseException) -> str:
    """Map any exception to one of OOM, INPUT, TRANSIENT, INTERNAL."""
    if isinstance(exc, JobError):
        return exc.error_class
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return "OOM"  # torch.OutOfMemoryError, CUDA/cuBLAS alloc failures, host MemoryError
    try:
        import requests

        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return "TRANSIENT"
    except ImportError:  # pragma: no cover - requests is a pinned dependency
        pass
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return "TRANSIENT"
    return "INTERNAL"


def error_message(exc: BaseException) -> str:
    """The one-line `[CLASS] message` the worker returns as {"error": ...}."""
    cls = classify(exc)
    detail = str(exc).strip() or type(exc).__name__
    if cls == "INTERNAL" and not isinstance(exc, JobError):
        detail = f"{type(exc).__name__}: {detail}"
    detail = " ".join(redact(detail).split())  # one line, no credentials
    if len(detail) > MAX_MESSAGE_CHARS:
        detail = detail[: MAX_MESSAGE_CHARS - 3] + "..."
    return f"[{cls}] {detail}"
