"""Putting the trigger word into captions: first, exactly once."""

from __future__ import annotations

import re


def _pattern(trigger: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Za-z0-9_-]){re.escape(trigger)}(?![A-Za-z0-9_-])", re.IGNORECASE)


def inject_trigger(trigger: str, caption: str) -> str:
    """'<trigger>, <caption>' with any other occurrence of the trigger removed."""
    rest = _pattern(trigger).sub("", caption)
    rest = re.sub(r"\s*,\s*(,\s*)+", ", ", rest)  # collapse ", ," left by the removal
    rest = " ".join(rest.split()).strip(" ,")
    return f"{trigger}, {rest}" if rest else trigger


def ensure_trigger(trigger: str, caption: str) -> str:
    """Training captions are the user's (maybe edited) text: only prepend when the trigger is missing."""
    return caption if _pattern(trigger).search(caption) else f"{trigger}, {caption}"
