"""Shot-cut detectors side by side on cuts of the kind the tests make: PySceneDetect's content detector (the
default, ``cut_detector: content``) and TransNetV2 (``cut_detector: transnetv2``), on the stage's 64-pixel-wide
analysis frames.

Two kinds of video, each with hard cuts at known frames, shots without a cut, and a two-frame white flash (no new
shot, so a cut found there is a false one):
``flat`` (coloured squares moving over flat backgrounds, as the curation tests draw them) and ``texture`` (pans
and zooms over footage-like texture, ``vidrd.synthetic.footage_texture``). A found cut counts when it is within
one frame of a true one. Speed is analysis frames per second after the first call; the first call (TransNetV2
loads its weights) is given apart.

    python -m benchmarks.bench_cuts [--device cpu|cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import numpy as np

from benchmarks.common import once, write_results
from curation.signals import find_cuts, small_frames
from curation.stages.pseudo_videos import CameraPath, render
from vidrd.synthetic import footage_texture, moving_square

SIZE = (96, 64)


def _square(colour: str, direction: str, frames: int, seed: int) -> np.ndarray:
    return moving_square(colour, direction, frames=frames, width=SIZE[0], height=SIZE[1], seed=seed)


def _pan(seed: int, frames: int, zoom: bool = False) -> np.ndarray:
    path = (CameraPath("zoom_in", frames, 0.95, 0.6, 0.5, 0.5, 0.5, 0.5) if zoom
            else CameraPath("pan", frames, 0.7, 0.7, 0.0, 0.5, 1.0, 0.5))  # fmt: skip
    return render(footage_texture(seed), path, *SIZE)


def _flash(video: np.ndarray, at: int) -> np.ndarray:
    out = video.copy()
    out[at : at + 2] = 255
    return out


def videos() -> dict[str, list[tuple[np.ndarray, list[int]]]]:
    """Per kind, (frames, the frames where new shots start)."""
    flat = [
        (np.concatenate([_square("red", "right", 30, 1), _square("blue", "up", 30, 7)]), [30]),
        (np.concatenate([_square("green", "left", 20, 2), _square("yellow", "down", 40, 3)]), [20]),
        (np.concatenate([_square(c, d, 25, k) for k, (c, d) in enumerate((("red", "up"), ("green", "right"),
                                                                          ("blue", "left")), 4)]), [25, 50]),
        (_square("yellow", "right", 60, 8), []),
        (_flash(_square("blue", "down", 60, 9), 30), []),  # a flash is no new shot
    ]  # fmt: skip
    texture = [
        (np.concatenate([_pan(1, 40), _pan(2, 40, zoom=True)]), [40]),
        (np.concatenate([_pan(3, 30, zoom=True), _pan(4, 50)]), [30]),
        (np.concatenate([_pan(5, 30), _pan(6, 30, zoom=True), _pan(7, 30)]), [30, 60]),
        (_pan(8, 80), []),
        (_flash(_pan(9, 80), 40), []),
    ]
    return {"flat": flat, "texture": texture}


def score(found: list[int], truth: list[int]) -> tuple[int, int, int]:
    """(true positives, false positives, misses), a found cut matching a true one within one frame."""
    left = list(truth)
    tp = 0
    for c in found:
        hit = next((t for t in left if abs(t - c) <= 1), None)
        if hit is not None:
            left.remove(hit)
            tp += 1
    return tp, len(found) - tp, len(left)


def measure(detect: Callable[[np.ndarray], list[int]], kinds: dict) -> tuple[dict, float]:
    """Per kind: recall, precision and what was found; and analysis frames per second over all videos."""
    out = {}
    frames = 0
    seconds = 0.0
    for kind, vids in kinds.items():
        tp = fp = fn = 0
        found_all = []
        for video, truth in vids:
            small = small_frames(video)
            found: list[int] = []
            seconds += once(lambda s=small, into=found: into.extend(detect(s)))
            frames += len(small)
            a, b, c = score(found, truth)
            tp, fp, fn = tp + a, fp + b, fn + c
            found_all.append(found)
        out[kind] = {"recall": round(tp / max(1, tp + fn), 3), "precision": round(tp / max(1, tp + fp), 3),
                     "cuts_true": sum(len(t) for _, t in vids), "found": found_all}  # fmt: skip
    return out, frames / seconds


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="TransNetV2's device: cpu or cuda (the content detector is CPU)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # one core, as one Ray task has
    kinds = videos()
    probe = small_frames(kinds["flat"][0][0])
    rows = []
    for name, detect in (
        ("content (PySceneDetect)", lambda f: find_cuts(f, "content")),
        (f"transnetv2 ({a.device})", lambda f: find_cuts(f, "transnetv2", device=a.device)),
    ):
        first_s = once(lambda d=detect: d(probe))  # TransNetV2: loading its weights
        quality, fps = measure(detect, kinds)
        row = {"detector": name, "first_call_s": round(first_s, 2), "analysis_frames_per_s": round(fps, 1), **quality}
        rows.append(row)
        print(json.dumps(row))
    write_results(a.json, rows, cores_used=1)
    return {"rows": rows}


if __name__ == "__main__":
    main()
