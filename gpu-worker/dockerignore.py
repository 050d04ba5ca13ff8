"""The build-context rules of a .dockerignore file, as BuildKit applies them (moby patternmatcher).

Used by the image test (no Docker engine needed): each pattern is a path glob relative to the
context root (`*` and `?` never cross `/`, `**` spans any number of directories); a pattern that
matches a directory matches everything below it; `!` re-includes; the last matching pattern wins.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path


def _regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif c == "*":
            out, i = out + "[^/]*", i + 1
        elif c == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(c), i + 1
    return re.compile(out + r"\Z")


def parse(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """-> [(is_exception, compiled pattern)] in file order; comments and blank lines dropped."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = posixpath.normpath(line[1:].strip() if exception else line).lstrip("/")
        rules.append((exception, _regex(pattern)))
    return rules


def excluded(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether `path` (relative, `/`-separated) is left out of the build context."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for exception, regex in rules:
        if any(regex.match(p) for p in prefixes):
            result = not exception
    return result


def load(path: Path) -> list[tuple[bool, re.Pattern[str]]]:
    return parse(path.read_text(encoding="utf-8"))
