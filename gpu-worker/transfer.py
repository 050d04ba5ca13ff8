"""Presigned-URL transfers: GET images in, PUT the LoRA out.

The worker holds no storage credentials; every URL is a presigned S3 (SigV4) URL, so
requests must carry no extra signed headers and the body must be exactly the file bytes.
URLs are logged and reported without their query string (it is the credential).

A presigned URL names one object: a redirect is never followed (it would take the request, and a
PUT's body, somewhere the orchestrator did not sign for), every download has a size cap enforced
while streaming, and a response whose Content-Type says it is not the expected kind of object
(an HTML error page from a proxy) is refused.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import urlsplit

import requests

from errors import AlreadyClaimed, InputError, JobError, StartedTooOften, TransientError

log = logging.getLogger("loraflow.transfer")

ATTEMPTS = 4
BACKOFF_SECONDS = 1.0  # doubled after each failed attempt
TIMEOUT = (10, 120)  # (connect, read) seconds
DOWNLOAD_THREADS = 8
CHUNK = 1 << 20

MAX_IMAGE_BYTES = 256 << 20
"""Ingest stores images of 40 megapixels at most (JPEG/WebP as uploaded, PNG when re-encoded): anything larger is not one of ours."""
MAX_CHECKPOINT_BYTES = 16 << 30
"""A FLUX LoRA of rank 256 with its optimizer state is a few GB."""
MAX_JSON_BYTES = 1 << 20
"""Claims and results are small JSON documents."""
IMAGE_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")
"""What S3 answers for an image ingest stored (image/jpeg, image/png, image/webp) or one stored without a type."""
BINARY_TYPES = ("application/octet-stream", "binary/octet-stream")


def safe_url(url: str) -> str:
    """scheme://host/path, enough to recognise an object without leaking its signature."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class _RetryableStatus(TransientError):
    """HTTP 429/5xx, or 409 to a conditional write: the store is overloaded, flaky or settling two
    writes at once (AWS answers ConditionalRequestConflict); worth another attempt."""


def _retrying(what: str, attempt_once: Callable[[], None]) -> None:
    """Retry connection errors, timeouts, 429 and 5xx; anything else fails at once."""
    delay = BACKOFF_SECONDS
    for attempt in range(1, ATTEMPTS + 1):
        try:
            attempt_once()
            return
        except (requests.ConnectionError, requests.Timeout, _RetryableStatus) as exc:
            if attempt == ATTEMPTS:
                if isinstance(exc, _RetryableStatus):
                    raise
                raise TransientError(f"{what}: {type(exc).__name__} after {ATTEMPTS} attempts") from exc
            log.warning("%s failed (attempt %d/%d): %s", what, attempt, ATTEMPTS, type(exc).__name__)
            time.sleep(delay)
            delay *= 2


def _check_status(what: str, response: requests.Response, client_error: type[JobError]) -> None:
    status = response.status_code
    if 300 <= status < 400:
        raise client_error(f"{what}: HTTP {status}: redirects are not followed (a presigned URL names its object)")
    if status < 400:
        return
    if status >= 500 or status == 429:
        raise _RetryableStatus(f"{what}: HTTP {status} after {ATTEMPTS} attempts")
    if status == 403:
        # S3 answers 403 to an expired presigned URL: fresh URLs on a retry fix it.
        raise TransientError(f"{what}: HTTP 403 (presigned URL expired or rejected)")
    raise client_error(f"{what}: HTTP {status}")


def _check_type(what: str, response: requests.Response, accepted: Sequence[str] | None) -> None:
    """No Content-Type is accepted (S3 stores none for our PUTs); a different one is refused."""
    kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if accepted is not None and kind and not any(kind.startswith(a) for a in accepted):
        raise InputError(f"{what}: Content-Type {kind} is not what a presigned object URL serves here ({', '.join(accepted)})")


def _save(response: requests.Response, dest: Path, what: str, max_bytes: int) -> None:
    """Streams the body to `dest`, refusing more than `max_bytes` (declared or actually sent)."""
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise InputError(f"{what}: {declared} bytes, more than the {max_bytes} allowed")
    written = 0
    with open(dest, "wb") as fh:
        for chunk in response.iter_content(CHUNK):
            written += len(chunk)
            if written > max_bytes:
                raise InputError(f"{what}: more than the {max_bytes} bytes allowed")
            fh.write(chunk)


def download(url: str, dest: Path, what: str, max_bytes: int = MAX_CHECKPOINT_BYTES, accepted: Sequence[str] | None = BINARY_TYPES, missing_ok: bool = False) -> bool:
    """GET into `dest`; with `missing_ok`, False (and no file) when the object does not exist."""
    found = True

    def once() -> None:
        nonlocal found
        with requests.get(url, stream=True, timeout=TIMEOUT, allow_redirects=False) as response:
            if missing_ok and response.status_code == 404:
                found = False
                return
            _check_status(what, response, InputError)
            _check_type(what, response, accepted)
            _save(response, dest, what, max_bytes)

    try:
        _retrying(what, once)
    except InputError:
        dest.unlink(missing_ok=True)  # never a partial file behind
        raise
    return found


def download_images(images: Sequence[dict], directory: Path, field: str = "images", indices: Sequence[int] | None = None) -> list[Path]:
    """Fetch every image concurrently; file i is images[i]. Errors name `images.<i>` and the id
    (`indices`: the positions of `images` in the job's list, when they are a subset of it)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{i:05d}" for i in range(len(images))]
    where = list(indices) if indices is not None else list(range(len(images)))

    def fetch(i: int) -> None:
        download(images[i]["url"], paths[i], f"{field}.{where[i]} (image {images[i]['id']}) download", MAX_IMAGE_BYTES, IMAGE_TYPES)

    pool = ThreadPoolExecutor(max_workers=min(DOWNLOAD_THREADS, len(images)))
    try:
        for future in [pool.submit(fetch, i) for i in range(len(images))]:
            future.result()  # re-raises the first failure in input order
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a failed job stops fetching the rest
    return paths


def upload(url: str, path: Path, what: str = "output.loraUrl upload") -> None:
    """HTTP PUT of exactly the file's bytes (no Content-Type: it would have to be signed)."""
    body = path.read_bytes()

    def once() -> None:
        response = requests.put(url, data=body, timeout=TIMEOUT, allow_redirects=False)
        _check_status(what, response, JobError)

    _retrying(what, once)
    log.info("uploaded %d bytes to %s", len(body), safe_url(url))


def _put_if_absent(url: str, body: bytes, what: str) -> bool:
    """A conditional PUT (`If-None-Match: *` is signed into the URL): True when this call wrote the
    object, False when it already existed (412). 409 (a concurrent conditional write) is retried."""
    written = False

    def once() -> None:
        nonlocal written
        response = requests.put(url, data=body, headers={"If-None-Match": "*"}, timeout=TIMEOUT, allow_redirects=False)
        if response.status_code == 409:
            raise _RetryableStatus(f"{what}: HTTP 409 (conditional write conflict) after {ATTEMPTS} attempts")
        if response.status_code == 412:
            return
        _check_status(what, response, JobError)
        written = True

    _retrying(what, once)
    return written


def _claim_holder(read_url: str) -> str | None:
    holder: str | None = None

    def once() -> None:
        nonlocal holder
        with requests.get(read_url, stream=True, timeout=TIMEOUT, allow_redirects=False) as response:
            _check_status("claim read", response, JobError)
            body = response.raw.read(MAX_JSON_BYTES + 1, decode_content=True)
        if len(body) > MAX_JSON_BYTES:
            raise JobError(f"claim read: more than {MAX_JSON_BYTES} bytes")
        holder = str(json.loads(body or b"{}").get("jobId", "")) or None

    _retrying("claim read", once)
    return holder


def claim(spec: dict, job_id: str) -> int:
    """Claims this job's work before any GPU time is spent; returns this start's attempt number.

    The claim holds the first job's id: a claim with another id means a duplicate job, which stops
    (CLAIMED). A claim with this job's own id is its own: the service retried the job after its
    worker died (same id), or the answer to our first PUT was lost. Every start then takes the
    first free attempt marker; none free means the job's workers keep dying (CRASHED)."""
    body = json.dumps({"jobId": job_id}).encode()
    if not _put_if_absent(spec["url"], body, "claim"):
        holder = _claim_holder(spec["readUrl"])
        if holder != job_id:
            raise AlreadyClaimed("claim: this work was already claimed by another GPU job; stopping before any GPU work")
        log.info("claim: held by this job already (a retried job, or a lost answer); continuing")
    for attempt, url in enumerate(spec["attemptUrls"]):
        if _put_if_absent(url, json.dumps({"jobId": job_id, "attempt": attempt}).encode(), f"claim.attemptUrls.{attempt}"):
            return attempt
    raise StartedTooOften(f"claim: this job was started {len(spec['attemptUrls'])} times already (its workers keep dying); not running it again")


def put_json(url: str, value: object, what: str) -> None:
    """PUT a JSON document (no Content-Type: it would have to be signed)."""
    body = json.dumps(value).encode()

    def once() -> None:
        _check_status(what, requests.put(url, data=body, timeout=TIMEOUT, allow_redirects=False), JobError)

    _retrying(what, once)


def fetch_if_exists(url: str, dest: Path, what: str) -> bool:
    """GET into `dest`; False (and no file) when the object does not exist."""
    return download(url, dest, what, missing_ok=True)
