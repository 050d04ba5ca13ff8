"""What the worker fetches: no redirects, size caps while streaming, content types (CPU only).

A small local HTTP server stands in for presigned URLs that misbehave: one that redirects to
another object, one that serves an HTML page, one that declares or streams more than allowed.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import transfer
from errors import InputError, JobError

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


@pytest.fixture
def server():
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k.replace("_", "-"), v)
            self.send_header("Content-Length", headers.get("Content_Length", str(len(body))))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            seen.append(f"GET {path}")
            if path == "/redirect":
                return self._send(302, Location="/elsewhere.png")
            if path == "/elsewhere.png":
                return self._send(200, PNG, Content_Type="image/png")
            if path == "/html":
                return self._send(200, b"<html>proxy login</html>", Content_Type="text/html; charset=utf-8")
            if path == "/declared-big":
                self.send_response(200)
                self.send_header("Content-Length", str(transfer.MAX_IMAGE_BYTES + 1))
                self.end_headers()
                return
            if path == "/streamed-big":  # no Content-Length: only counting the bytes catches it
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()
                self.wfile.write(b"\0" * 4096)
                self.close_connection = True
                return
            return self._send(200, PNG, Content_Type="image/png")

        def do_PUT(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append(f"PUT {self.path.split('?', 1)[0]}")
            return self._send(307, Location="/stolen")

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    yield f"http://{host}:{port}", seen
    httpd.shutdown()
    httpd.server_close()


def image(url: str) -> dict:
    return {"id": "a" * 64, "url": url + "?X-Amz-Signature=SECRETSIG"}


def test_a_redirecting_image_url_is_refused_and_not_followed(server, tmp_path: Path):
    base, seen = server
    with pytest.raises(InputError, match=r"images\.0 .*HTTP 302: redirects are not followed") as err:
        transfer.download_images([image(f"{base}/redirect")], tmp_path / "images")
    assert "SECRETSIG" not in str(err.value)
    assert seen == ["GET /redirect"]
    assert not list((tmp_path / "images").iterdir())


def test_an_upload_is_not_sent_on_to_a_redirect(server, tmp_path: Path):
    base, seen = server
    lora = tmp_path / "lora.safetensors"
    lora.write_bytes(b"weights")
    with pytest.raises(JobError, match=r"HTTP 307: redirects are not followed"):
        transfer.upload(f"{base}/lora", lora)
    assert seen == ["PUT /lora"]


def test_an_html_page_is_not_an_image(server, tmp_path: Path):
    base, _ = server
    with pytest.raises(InputError, match=r"Content-Type text/html"):
        transfer.download_images([image(f"{base}/html")], tmp_path / "images")


def test_downloads_are_capped_by_declared_and_streamed_size(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    base, _ = server
    with pytest.raises(InputError, match=r"more than the \d+ allowed"):
        transfer.download_images([image(f"{base}/declared-big")], tmp_path / "a")
    monkeypatch.setattr(transfer, "MAX_IMAGE_BYTES", 1024)
    with pytest.raises(InputError, match=r"more than the 1024 bytes allowed"):
        transfer.download_images([image(f"{base}/streamed-big")], tmp_path / "b")
    assert not (tmp_path / "b" / "00000").exists()


def test_a_plain_image_still_downloads(server, tmp_path: Path):
    base, _ = server
    [path] = transfer.download_images([image(f"{base}/ok.png")], tmp_path / "images")
    assert path.read_bytes() == PNG
