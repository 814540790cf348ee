"""Prompts for batches and stories: one prompt per video, or a prompt per clip (optionally by range).

``--prompts-file`` formats:

* ``.txt``: one video per non-empty line; a story separates clip prompts with `` | ``
  (``a cat sleeps | the cat wakes up``: clip 0 gets the first, clips 1.. the second).
* ``.json``: a list whose items are a prompt string, a list of clip prompts, or an object
  ``{"prompt": ...}`` / ``{"prompts": [...]}`` / ``{"clips": {"0-2": "...", "3": "..."}}`` with an
  optional ``"seed"``.

A list of clip prompts shorter than the number of clips keeps its last prompt for the rest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*$")


class PromptError(ValueError):
    """A prompt specification that cannot be turned into one prompt per clip."""


@dataclass
class VideoRequest:
    """One video to generate: clip prompts (or range -> prompt) and an optional seed of its own. A single string
    is one prompt for every clip (not a list of one-character prompts)."""

    prompts: str | list[str] | dict[str, str]
    seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.prompts, str):
            self.prompts = [self.prompts]

    def for_clips(self, num_clips: int) -> list[str]:
        """Exactly one prompt per clip."""
        if isinstance(self.prompts, dict):
            out: list[str | None] = [None] * num_clips
            for spec, prompt in self.prompts.items():
                m = _RANGE.match(spec)
                if not m:
                    raise PromptError(f"clip range {spec!r} is not 'N' or 'N-M'")
                lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
                if hi < lo:
                    raise PromptError(f"clip range {spec!r} is empty")
                for i in range(lo, min(hi, num_clips - 1) + 1):
                    out[i] = prompt
            missing = [i for i, p in enumerate(out) if p is None]
            if missing:
                raise PromptError(f"clips {missing} have no prompt (ranges given: {sorted(self.prompts)})")
            return [p for p in out if p is not None]
        if not self.prompts:
            raise PromptError("no prompt given")
        if len(self.prompts) > num_clips:
            raise PromptError(f"{len(self.prompts)} clip prompts for a video of {num_clips} clips")
        return list(self.prompts) + [self.prompts[-1]] * (num_clips - len(self.prompts))


def _item(obj: Any, where: str) -> VideoRequest:
    if isinstance(obj, str):
        return VideoRequest([obj])
    if isinstance(obj, list) and all(isinstance(p, str) for p in obj):
        return VideoRequest(list(obj))
    if isinstance(obj, dict):
        seed = obj.get("seed")
        if "clips" in obj and isinstance(obj["clips"], dict):
            return VideoRequest({str(k): str(v) for k, v in obj["clips"].items()}, seed)
        if "prompts" in obj:
            return VideoRequest([str(p) for p in obj["prompts"]], seed)
        if "prompt" in obj:
            return VideoRequest([str(obj["prompt"])], seed)
    raise PromptError(f"{where}: expected a prompt, a list of clip prompts, or {{prompt|prompts|clips}}")


def read_prompts_file(path: str | Path) -> list[VideoRequest]:
    """Video requests from a ``.txt`` or ``.json`` prompts file (formats in the module docstring)."""
    p = Path(path)
    if not p.exists():
        raise PromptError(f"{p}: no such prompts file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:  # a folder, unreadable, not UTF-8
        raise PromptError(f"{p}: not a readable UTF-8 text file ({type(e).__name__})") from e
    if p.suffix == ".json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise PromptError(f"{p}: invalid JSON at line {e.lineno}: {e.msg}") from e
        except RecursionError as e:
            raise PromptError(f"{p}: JSON nested too deeply to read") from e
        if not isinstance(items, list):
            raise PromptError(f"{p}: expected a JSON list")
        reqs = [_item(x, f"{p}[{i}]") for i, x in enumerate(items)]
    else:
        reqs = [
            VideoRequest([c.strip() for c in line.split(" | ") if c.strip()])
            for line in text.splitlines()
            if line.strip()
        ]
    if not reqs:
        raise PromptError(f"{p}: no prompts")
    return reqs
