"""Label-conditioned caption prompts and the checks on what a captioning model answers (paper 4.2).

A template is picked at random per video (seeded, recorded with its id). An answer is replaced by
the fallback caption ``"a video of {label}"`` (documented, and counted by reason) when it is empty,
repeats the prompt, says nothing but the label, or loops on the same words.
"""

from __future__ import annotations

import re

import numpy as np

BLIP2_TEMPLATES: tuple[str, ...] = (
    "Question: What is happening in this picture of {label}? Answer:",
    "A short caption for a video of {label}:",
    "Question: Describe in one sentence what the people are doing ({label}). Answer:",
    "This is a frame from a video showing {label}. A detailed description:",
)
# MiniGPT-4 (long-videos): one yes/no relevance question per sampled frame, and caption prompts for the
# middle frame of each kept segment.
RELEVANCE_QUESTION = "Is this picture related to {label}? Answer yes or no."
MINIGPT4_TEMPLATES: tuple[str, ...] = (
    "Describe what is happening in this picture of {label} in one sentence.",
    "Write a short caption for this video frame showing {label}.",
    "This image comes from a video about {label}. Describe the scene in one sentence.",
)
FALLBACK = "a video of {label}"


def pick_template(rng: np.random.Generator, templates: tuple[str, ...] = BLIP2_TEMPLATES) -> int:
    """A template id, uniformly at random."""
    return int(rng.integers(len(templates)))


def readable_label(label: str) -> str:
    """Dataset labels as words: ``playing_guitar`` / ``PlayingGuitar`` -> ``playing guitar``."""
    s = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", label.replace("_", " ").replace("/", " "))
    return " ".join(s.lower().split())


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def check_answer(answer: str, prompt: str, label: str) -> str | None:
    """Why ``answer`` is unusable as a caption, or ``None`` if it is fine."""
    words = _words(answer)
    if not words:
        return "empty"
    if set(words) <= set(_words(label)) | {"a", "an", "the", "of", "video", "picture", "photo"}:
        return "only_label"
    if " ".join(words) in " ".join(_words(prompt)):
        return "repeats_prompt"
    if any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2)) or (
        len(words) >= 6 and len(set(words)) / len(words) < 0.5
    ):
        return "repetitive"
    return None


def caption_or_fallback(answer: str, prompt: str, label: str) -> tuple[str, str | None]:
    """(caption, fallback reason or None): the cleaned answer, or ``FALLBACK`` when it is unusable."""
    reason = check_answer(answer, prompt, label)
    if reason is not None:
        return FALLBACK.format(label=label), reason
    return " ".join(answer.split()).rstrip(" ."), None
