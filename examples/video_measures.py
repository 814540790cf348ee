"""Measurements of a generated moving-object video against its caption ("a red circle moving left"): what
colour the object is, whether it is there, where it goes and how fast, how still the background stays.

Everything is computed from pixels: a pixel belongs to the object when it is saturated (the backgrounds are
grey) and near one of the palette's colours. The functions are checked on the generator's own clips in
``tests/test_learn_video.py`` (a true clip passes, a reversed or recoloured one fails).
"""

from __future__ import annotations

import math

import numpy as np

from vidrd.synthetic import COLOURS, DIRECTIONS

PALETTE = list(COLOURS)
_RGB = np.array([COLOURS[c] for c in PALETTE], dtype=np.float32)
MIN_SATURATION = 60  # max - min over RGB; the grey backgrounds stay below ~20 after encoding
MAX_COLOUR_DISTANCE = 90.0
MIN_AREA_SHARE = 20 / 4096  # an object smaller than this share of the frame counts as vanished (20 px at 64x64)
MIN_SPEED = 0.25  # pixels per frame: slower counts as not moving
MAX_ANGLE = 45.0  # degrees between the measured and the caption's direction


def colour_labels(video: np.ndarray) -> np.ndarray:
    """``[F, H, W]`` palette index of every object pixel, -1 elsewhere."""
    x = video.astype(np.float32)
    sat = x.max(axis=-1) - x.min(axis=-1)
    dist = np.linalg.norm(x[..., None, :] - _RGB, axis=-1)  # [F, H, W, K]
    nearest = dist.argmin(axis=-1)
    ok = (sat >= MIN_SATURATION) & (dist.min(axis=-1) <= MAX_COLOUR_DISTANCE)
    return np.where(ok, nearest, -1)


def measure(video: np.ndarray, colour: str, direction: str) -> dict:
    """Per-video figures for a ``[F, H, W, 3]`` uint8 video captioned with ``colour`` and ``direction``.

    - ``colour_ok``: the object's colour in most frames is the caption's; ``colour_share``: share of frames
      where it is.
    - ``present``: share of frames with an object of at least ``MIN_AREA_SHARE`` of the frame.
    - ``velocity`` (x, y pixels per frame, image axes: y grows downwards) from a least-squares line through
      the centroid track; ``speed``; ``angle_error`` to the caption's direction; ``direction_ok``: moving at
      least ``MIN_SPEED`` within ``MAX_ANGLE`` degrees of it; ``sign_ok``: the motion along the caption's axis
      has the caption's sign.
    - ``flicker_frames``: frames where the object vanishes or has another colour than in most frames.
    - ``background_error``: mean absolute change (0..1) of non-object pixels from their temporal median.
    """
    f, h, w, _ = video.shape
    labels = colour_labels(video)
    min_area = MIN_AREA_SHARE * h * w
    counts = np.stack([(labels == k).reshape(f, -1).sum(axis=1) for k in range(len(PALETTE))], axis=1)  # [F, K]
    frame_colour = np.where(counts.max(axis=1) >= min_area, counts.argmax(axis=1), -1)
    present = frame_colour >= 0
    shown = frame_colour[present]
    main = int(np.bincount(shown, minlength=len(PALETTE)).argmax()) if shown.size else -1
    want = PALETTE.index(colour)
    ys, xs = np.mgrid[0:h, 0:w]
    track = np.full((f, 2), np.nan)
    for t in np.flatnonzero(present):
        m = labels[t] == frame_colour[t]
        track[t] = xs[m].mean(), ys[m].mean()
    ok = ~np.isnan(track[:, 0])
    if ok.sum() >= 2:
        tt = np.flatnonzero(ok).astype(np.float64)
        velocity = np.array([np.polyfit(tt, track[ok, i], 1)[0] for i in range(2)])
    else:
        velocity = np.array([np.nan, np.nan])
    expected = np.array(DIRECTIONS[direction], dtype=np.float64)
    speed = float(np.linalg.norm(velocity))
    if np.isfinite(speed) and speed > 0:
        angle = math.degrees(math.acos(float(np.clip(velocity @ expected / speed, -1.0, 1.0))))
    else:
        angle = float("nan")
    objects = labels >= 0
    still = np.median(video.astype(np.float32), axis=0)
    diff = np.abs(video.astype(np.float32) - still).mean(axis=-1)
    background = float(diff[~objects].mean() / 255.0) if (~objects).any() else float("nan")
    return {
        "colour_ok": bool(main == want),
        "colour_share": float((frame_colour == want).mean()),
        "present": float(present.mean()),
        "velocity": [round(float(v), 3) for v in velocity],
        "speed": round(speed, 3),
        "angle_error": round(angle, 1),
        "direction_ok": bool(np.isfinite(angle) and speed >= MIN_SPEED and angle <= MAX_ANGLE),
        "sign_ok": bool(np.isfinite(speed) and float(velocity @ expected) > 0),
        "flicker_frames": int((~present).sum() + ((frame_colour != main) & present).sum()),
        "background_error": round(background, 4),
        "track": [[round(float(v), 2) for v in p] for p in track],
    }


def seam_figures(track: np.ndarray, seams: list[int], direction: str, after: int = 6) -> dict:
    """How a long video's object track behaves at clip seams (``seams``: index s where frames s and s+1 come
    from different clips).

    ``jump_ratio``: the largest position change from the seam's step through the new clip's first ``after``
    frames, over the median change elsewhere (1 = ordinary steps; much more = a jump). The window matters: a
    model that restarts its path in every clip keeps the reused frames and snaps back one or two frames later
    (run 5's tracks), which the step across the seam alone does not see. ``after_motion``: the displacement
    along the caption's direction over the ``after`` frames from the new clip's first frame, over what the
    median step would cover (positive: continues, negative: reverses, near 0: freezes). A reversal with no jump
    is the reflection the reversed frame reuse makes; a reversal with a jump is a snap back to the path's start.
    """
    steps = np.linalg.norm(np.diff(track, axis=0), axis=1)  # [F-1]; steps[v]: frame v -> v+1
    windows = [range(s, min(len(steps), s + 1 + after)) for s in seams if s + 1 < len(track)]
    near = {i for w in windows for i in w}
    inside = np.array([i for i in range(len(steps)) if i not in near and np.isfinite(steps[i])])
    median = float(np.median(steps[inside])) if inside.size else float("nan")
    e = np.array(DIRECTIONS[direction], dtype=np.float64)
    jumps, after_motion = [], []
    for w in windows:
        seen = steps[list(w)]
        seen = seen[np.isfinite(seen)]
        jumps.append(float(seen.max() / median) if median > 0 and seen.size else float("nan"))
        start, end = w.start + 1, min(len(track) - 1, w.start + 1 + after)
        if end > start and np.isfinite(track[[start, end]]).all():
            along = float((track[end] - track[start]) @ e)
            after_motion.append(along / (median * (end - start)) if median > 0 else float("nan"))
    return {
        "median_step": round(median, 3),
        "jump_ratio": [round(j, 2) for j in jumps],
        "after_motion": [round(a, 2) for a in after_motion],
    }
