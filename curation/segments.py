"""Turn per-frame keep/drop decisions of a long video into contiguous segments (paper 4.2, VideoLT)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def kept_runs(keep: Sequence[bool]) -> list[tuple[int, int]]:
    """``[first, last]`` sample indices of each run of consecutive kept samples."""
    runs, start = [], None
    for i, k in enumerate(keep):
        if k and start is None:
            start = i
        elif not k and start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, len(keep) - 1))
    return runs


def segments(
    times: Sequence[float], keep: Sequence[bool], duration: float, min_seconds: float, max_seconds: float
) -> list[dict[str, float | int]]:
    """Segments of kept samples, in seconds.

    A sample at ``times[i]`` stands for the interval up to the next sample (the last one up to
    ``duration``). A run of kept samples becomes ``[start, end)``; runs shorter than ``min_seconds`` are
    dropped; runs longer than ``max_seconds`` are cut into equal pieces no longer than it. Each segment
    carries the sample indices it covers (``first``, ``last``).
    """
    if len(times) != len(keep):
        raise ValueError(f"{len(times)} times but {len(keep)} decisions")
    if min_seconds <= 0 or max_seconds < min_seconds:
        raise ValueError(f"need 0 < min_seconds <= max_seconds, got {min_seconds}, {max_seconds}")
    ends = [*times[1:], duration]
    out: list[dict[str, float | int]] = []
    for first, last in kept_runs(keep):
        start, end = float(times[first]), float(min(ends[last], duration))
        length = end - start
        if length + 1e-9 < min_seconds:
            continue
        pieces = max(1, math.ceil(length / max_seconds - 1e-9))
        step = length / pieces
        for k in range(pieces):
            s, e = start + k * step, start + (k + 1) * step
            idx = [i for i in range(first, last + 1) if s - 1e-9 <= times[i] < e - 1e-9] or [first]
            out.append({"start": s, "end": e, "first": idx[0], "last": idx[-1]})
    return out
