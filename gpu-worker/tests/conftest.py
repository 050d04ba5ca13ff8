"""Shared fixtures: tiny models built once per session, a local stand-in for presigned S3 URLs."""

from __future__ import annotations

import hashlib
import io
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

WORKER_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(WORKER_DIR))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models on a few shared cores: one thread each is much faster than threads spinning on each other.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import build_tiny_models

    out = tmp_path_factory.mktemp("models")
    for name, build in build_tiny_models.BUILDERS.items():
        build(out / name)
    return out


@pytest.fixture
def worker_env(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points the worker at the tiny models and a watched work dir; records progress updates."""
    import runpod
    import transfer

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("LORAFLOW_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("LORAFLOW_WORK_DIR", str(work))
    monkeypatch.setenv("LORAFLOW_CAPTIONER", "tiny-captioner")
    monkeypatch.setenv("LORAFLOW_SAMPLE_STEPS", "3")
    monkeypatch.setattr(transfer, "BACKOFF_SECONDS", 0.01)
    return work


@pytest.fixture
def progress_log(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    import runpod

    sent: list[dict] = []
    monkeypatch.setattr(runpod.serverless, "progress_update", lambda job, payload: sent.append(payload))
    return sent


class FakeStore:
    """A threaded HTTP server: GET /<key> serves `objects`, PUT /<key> stores into `objects`
    (honouring `If-None-Match: *` like S3's conditional writes).

    `fail[key] = status` makes every request for that key answer `status`. Every URL gets a
    fake signature query string, so tests can check it never leaks.
    """

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.fail: dict[str, int] = {}
        self.fail_once: dict[str, int] = {}
        self.requests: list[tuple[str, str, dict]] = []
        store = self

        class Handler(BaseHTTPRequestHandler):
            def _key(self) -> str:
                return self.path.split("?", 1)[0].lstrip("/")

            def _maybe_fail(self) -> bool:
                status = store.fail.get(self._key()) or store.fail_once.pop(self._key(), None)
                if status:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                return bool(status)

            def do_GET(self) -> None:  # noqa: N802
                store.requests.append(("GET", self._key(), dict(self.headers)))
                if self._maybe_fail():
                    return
                body = store.objects.get(self._key())
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def do_PUT(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                store.requests.append(("PUT", self._key(), dict(self.headers)))
                if self._maybe_fail():
                    return
                if self.headers.get("If-None-Match") == "*" and self._key() in store.objects:
                    self.send_response(412)  # S3's conditional write: the object exists
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                store.objects[self._key()] = body
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, key: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/{key}?X-Amz-Signature=SECRETSIG&X-Amz-Credential=SECRETCRED"

    def put_image(self, key: str, body: bytes) -> dict:
        self.objects[key] = body
        return {"id": hashlib.sha256(body).hexdigest(), "url": self.url(key)}


@pytest.fixture
def store():
    s = FakeStore()
    s.thread.start()
    yield s
    s.server.shutdown()
    s.server.server_close()


PARAM_DEFAULTS = {
    "lrScheduler": "constant", "warmupSteps": 0, "gradientAccumulation": 1, "mixedPrecision": "auto",
    "aspectBuckets": False,
}


def train_job(store, n_images: int = 3, *, base: str = "tiny-sd", job_id: str = "train-1", out: str = "out/lora.safetensors",
              extra: dict | None = None, **params) -> dict:
    """A complete train job (every defaulted field present, as the orchestrator sends it)."""
    images = [dict(store.put_image(f"img/{i}.png", png_bytes(i)), caption=f"a photo number {i}") for i in range(n_images)]
    return {
        "id": job_id,
        "input": {
            "task": "train",
            "baseModel": base,
            "triggerWord": "zxq",
            "images": images,
            "params": {"steps": 30, "rank": 4, "learningRate": 1e-3, "batchSize": 2, "seed": 7, **PARAM_DEFAULTS, **params},
            "output": {"loraUrl": store.url(out)},
            "format": "diffusers",
            **(extra or {}),
        },
    }


def png_bytes(seed: int, size: int = 48, width: int | None = None) -> bytes:
    """A small deterministic, non-square picture (so the crop path runs)."""
    from PIL import Image

    width = width or size + 16
    img = Image.new("RGB", (width, size))
    px = img.load()
    for x in range(width):
        for y in range(size):
            px[x, y] = ((x * 7 + seed * 40) % 256, (y * 5 + seed * 90) % 256, ((x + y) * 3 + seed * 10) % 256)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
