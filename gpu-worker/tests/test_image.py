"""Dockerfile.gpu without a Docker engine: every COPY source survives the ignore rules BuildKit
applies to it, nothing else enters the context, and the base image matches the pinned torch."""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
from pathlib import Path

import pytest

import dockerignore

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile.gpu"


def context_rules():
    # BuildKit reads <Dockerfile>.dockerignore first and then ignores the root .dockerignore.
    own = DOCKERFILE.with_name(DOCKERFILE.name + ".dockerignore")
    return dockerignore.load(own if own.is_file() else ROOT / ".dockerignore")


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    return [p for p in out.decode().split("\0") if p and (ROOT / p).is_file()]


def copy_sources() -> list[str]:
    sources = []
    for line in re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8")).splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0].upper() in ("COPY", "ADD") and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def files_of(source: str, files: list[str]) -> list[str]:
    """What a COPY source names: a file, a directory's files, or a glob (`*` stays in one directory)."""
    source = source.rstrip("/")
    glob = re.compile(fnmatch.translate(source).replace(".*", "[^/]*"))
    return [f for f in files if f == source or f.startswith(source + "/") or glob.match(f)]


def test_every_copy_source_survives_the_ignore_rules() -> None:
    rules, files = context_rules(), tracked_files()
    sources = copy_sources()
    assert "gpu-worker/requirements.txt" in sources and "gpu-worker/*.py" in sources
    for source in sources:
        named = files_of(source, files)
        assert named, f"COPY {source}: no such file in the repository"
        lost = [f for f in named if dockerignore.excluded(f, rules)]
        assert not lost, f"COPY {source}: the build context leaves out {lost[:5]}"


def test_nothing_else_enters_the_context() -> None:
    rules, files = context_rules(), tracked_files()
    copied = {f for s in copy_sources() for f in files_of(s, files)}
    extra = [f for f in files if f not in copied and not dockerignore.excluded(f, rules)]
    assert not extra, f"in the build context but never copied: {extra[:10]}"
    for heavy in (".git/HEAD", "node_modules/x/index.js", ".tools/pyenv/bin/python", "gpu-worker/__pycache__/a.pyc"):
        assert dockerignore.excluded(heavy, rules), heavy


@pytest.mark.parametrize(("rules", "path", "out"), [
    ("*\n!a/*.py", "a/b.py", False), ("*\n!a/*.py", "a/c/b.py", True), ("a\n!a/b", "a/b/c", False),
    ("**/x", "p/q/x/y", True), ("/a/\n", "a/b", True), ("a*", "ab/c", True), ("a?", "abc", False), ("a?", "ab", True),
])
def test_ignore_rules_follow_buildkit(rules, path, out) -> None:
    assert dockerignore.excluded(path, dockerignore.parse(rules)) is out


def test_base_image_matches_the_pinned_torch() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    torch_arg = re.search(r"^ARG TORCH_VERSION=(\S+)$", text, re.M).group(1)
    flavor = re.search(r"^ARG CUDA_FLAVOR=cuda(\d+\.\d+)-cudnn\d+-runtime$", text, re.M)
    pinned = re.search(r"^torch==(\S+) ", (ROOT / "gpu-worker/requirements.txt").read_text(), re.M).group(1)
    assert torch_arg == pinned, "the base image's torch must be the one requirements.txt pins"
    import torch

    if torch.__version__.split("+")[0] == pinned and torch.version.cuda:
        assert flavor.group(1) == torch.version.cuda, "the base image's CUDA must be the pinned wheel's"
