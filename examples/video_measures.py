"""Measurements of a generated moving-object video against its caption ("a red circle moving left"): what
colour and shape the object is, whether it is there, where it goes and how fast, how still the background stays,
and for a video made clip by clip whether it holds together at the seams (:func:`long_video_figures`).

Everything is computed from pixels: a pixel belongs to the object when it is saturated (the backgrounds are
grey) and near one of the palette's colours. The functions are checked on the generator's own clips in
``tests/test_learn_video.py`` (a true clip passes, a reversed or recoloured one fails).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from vidrd.synthetic import COLOURS, DIRECTIONS, SHAPES

PALETTE = list(COLOURS)
_RGB = np.array([COLOURS[c] for c in PALETTE], dtype=np.float32)
MIN_SATURATION = 60  # max - min over RGB; the grey backgrounds stay below ~20 after encoding
MAX_COLOUR_DISTANCE = 90.0
MIN_AREA_SHARE = 20 / 4096  # an object smaller than this share of the frame counts as vanished (20 px at 64x64)
MIN_SPEED = 0.25  # pixels per frame: slower counts as not moving
MAX_ANGLE = 45.0  # degrees between the measured and the caption's direction
# A disk fills pi/4 of its bounding box, a square all of it: the object is a square above the midpoint.
SQUARE_FILL = (1 + math.pi / 4) / 2
JUMP = 3.0  # a step more than 3 median steps long (along, against or across the caption's direction) is a jump
AFTER = 6  # frames after a seam over which the motion must continue
CONTINUES = 0.25  # ... at least this share of what the median step would cover there


def colour_labels(video: np.ndarray) -> np.ndarray:
    """``[F, H, W]`` palette index of every object pixel, -1 elsewhere."""
    x = video.astype(np.float32)
    sat = x.max(axis=-1) - x.min(axis=-1)
    dist = np.linalg.norm(x[..., None, :] - _RGB, axis=-1)  # [F, H, W, K]
    nearest = dist.argmin(axis=-1)
    ok = (sat >= MIN_SATURATION) & (dist.min(axis=-1) <= MAX_COLOUR_DISTANCE)
    return np.where(ok, nearest, -1)


def grow(mask: np.ndarray, px: int = 2) -> np.ndarray:
    """``mask`` (``[..., H, W]`` bool) grown by ``px`` pixels in every direction (a square neighbourhood)."""
    out = mask.copy()
    for dy in range(-px, px + 1):
        for dx in range(-px, px + 1):
            out |= np.roll(mask, (dy, dx), axis=(-2, -1))
    return out


def measure(video: np.ndarray, colour: str, direction: str, labels: np.ndarray | None = None) -> dict:
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
    labels = colour_labels(video) if labels is None else labels  # a caller that has them saves the slow part
    min_area = MIN_AREA_SHARE * h * w
    counts = np.stack([(labels == k).reshape(f, -1).sum(axis=1) for k in range(len(PALETTE))], axis=1)  # [F, K]
    frame_colour = np.where(counts.max(axis=1) >= min_area, counts.argmax(axis=1), -1)
    present = frame_colour >= 0
    shown = frame_colour[present]
    main = int(np.bincount(shown, minlength=len(PALETTE)).argmax()) if shown.size else -1
    want = PALETTE.index(colour)
    track, shapes = object_track(video, labels, frame_colour)
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
        "track": [[round(float(v), 2) for v in p] if np.isfinite(p).all() else None for p in track],
        "frame_colours": [PALETTE[c] if c >= 0 else None for c in frame_colour],
        "frame_shapes": shapes,
    }


RIM_SATURATION = 20  # the rim (edge pixels mixed with the background) counts from here, in proportion


def object_track(
    video: np.ndarray, labels: np.ndarray, frame_colour: np.ndarray
) -> tuple[np.ndarray, list[str | None]]:
    """``[F, 2]`` (x, y) centre of the object per frame (NaN where it is missing) from its pixels and its rim within
    2 px, each weighted by saturation, and its shape (:func:`frame_shape`). H.264's half-resolution colour smears an
    edge over two pixels, so a centroid of the thresholded pixels alone wobbles by a pixel from frame to frame; the
    weighted rim follows the motion smoothly."""
    f, h, w, _ = video.shape
    x = video.astype(np.float32)
    sat = x.max(axis=-1) - x.min(axis=-1)
    weight = np.clip((sat - RIM_SATURATION) / (MIN_SATURATION - RIM_SATURATION), 0, None)
    ys, xs = np.mgrid[0:h, 0:w]
    track = np.full((f, 2), np.nan)
    shapes: list[str | None] = [None] * f
    for t in np.flatnonzero(frame_colour >= 0):
        core = labels[t] == frame_colour[t]
        wt = np.where(grow(core), weight[t], 0.0)  # the rim, and nothing of another object far away
        track[t] = (wt * xs).sum() / wt.sum(), (wt * ys).sum() / wt.sum()
        shapes[t] = frame_shape(core)
    return track, shapes


def frame_shape(mask: np.ndarray) -> str | None:
    """``square`` or ``circle`` from how much of its bounding box the object's pixels fill (None: too few). Wrong in
    about 3% of single frames after H.264 (its half-resolution colour makes the edges blocky); a clip's shape is the
    majority of its frames."""
    ys, xs = np.nonzero(mask)
    if ys.size < 4:
        return None
    fill = ys.size / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1))
    return "square" if fill >= SQUARE_FILL else "circle"


def _majority(values: list) -> object:
    seen = [v for v in values if v is not None]
    return max(set(seen), key=seen.count) if seen else None


def long_video_figures(
    video: np.ndarray, colour: str, direction: str, shape: str, seams: list[int], labels: np.ndarray | None = None
) -> dict:
    """Whether a video made clip by clip holds together, from its pixels (``[F, H, W, 3]`` uint8).

    ``seams``: video indices s where frames s and s+1 come from different clips. Figures:

    - ``median_step``: the median frame-to-frame move of the object over the frames where it moves at least
      ``MIN_SPEED`` (px; ``MIN_SPEED`` when it hardly moves at all).
    - ``backward_jump``, ``sideways_jump``, ``forward_jump``: the largest move between consecutive frames anywhere in
      the video against, across and along the caption's direction, in median steps. A snap back a few frames after
      a seam is a backward jump like one at the seam itself.
    - ``after_seam``: per seam, the move along the caption's direction over the ``AFTER`` frames that follow, in
      median steps per frame (1: as fast as elsewhere; negative: reversed, which is what a mirrored guide makes;
      None where the object is missing at either end).
    - ``at_edge``: per seam, whether the object's front was already within that distance of the frame's border, where
      it cannot continue; such a seam must only not reverse.
    - ``clip_colours``, ``clip_shapes``: each clip's colour and shape (majority of its frames).
    - ``jump_steps``: every step v (frame v -> v+1) that is a jump, so where the jumps are can be told: at a seam,
      in the frames just after it (a new clip leaving the frames it was given), or inside a clip.
    - ``no_jump``, ``continues`` (after every seam), ``keeps_object`` (every clip the caption's colour and shape,
      the object in at least 95% of frames) and ``coherent``: all three.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; one of {SHAPES}")
    labels = colour_labels(video) if labels is None else labels
    m = measure(video, colour, direction, labels)
    f, h, w, _ = video.shape
    track = np.array([p if p is not None else (np.nan, np.nan) for p in m["track"]], dtype=np.float64)
    e = np.array(DIRECTIONS[direction], dtype=np.float64)
    side = np.array([-e[1], e[0]])
    d = np.diff(track, axis=0)  # d[v]: frame v -> v+1; NaN where the object is missing
    ok = np.isfinite(d).all(axis=1)
    lengths = np.linalg.norm(d[ok], axis=1)
    moving = lengths[lengths >= MIN_SPEED]  # an object resting at the frame's edge does not shrink the yardstick
    median = float(np.median(moving)) if moving.size >= 3 else MIN_SPEED
    along, across = d[ok] @ e, np.abs(d[ok] @ side)

    def most(x: np.ndarray) -> float:
        return round(max(float(x.max()), 0.0) / median, 2) if x.size else 0.0

    frame_colour = [PALETTE.index(c) if c else -1 for c in m["frame_colours"]]
    after, at_edge = [], []
    for s in seams:
        end = min(f - 1, s + AFTER)
        if end <= s or not np.isfinite(track[[s, end]]).all():
            after.append(None)
            at_edge.append(False)
            continue
        after.append(round(float((track[end] - track[s]) @ e) / (median * (end - s)), 2))
        ys, xs = np.nonzero(labels[s] == frame_colour[s])
        front = float(((np.stack([xs, ys], axis=1) + 0.5) @ e).max())  # the object's leading edge, along e
        border = float(np.array([w, h]) @ np.maximum(e, 0))  # the frame's edge ahead, along e
        at_edge.append(bool(border - front < median * AFTER + 1.0))
    bounds = [0, *[s + 1 for s in seams], f]
    clip_colours = [_majority(m["frame_colours"][a:b]) for a, b in itertools.pairwise(bounds)]
    clip_shapes = [_majority(m["frame_shapes"][a:b]) for a, b in itertools.pairwise(bounds)]
    # Rounded as `most` rounds, so a jump is what the figures above call one. NaN (object missing): no jump.
    steps = np.round(np.maximum(np.abs(d @ e), np.abs(d @ side)) / median, 2)
    jump_steps = np.nonzero(steps > JUMP)[0]
    no_jump = jump_steps.size == 0
    continues = all(
        a is not None and (a > CONTINUES or (edge and a >= -CONTINUES)) for a, edge in zip(after, at_edge, strict=True)
    )
    keeps = all(c == colour for c in clip_colours) and all(x == shape for x in clip_shapes) and m["present"] >= 0.95
    return {
        "median_step": round(median, 3),
        "backward_jump": most(-along),
        "sideways_jump": most(across),
        "forward_jump": most(along),
        "after_seam": after,
        "at_edge": at_edge,
        "clip_colours": clip_colours,
        "clip_shapes": clip_shapes,
        "present": m["present"],
        "direction_ok": m["direction_ok"],
        "jump_steps": [int(v) for v in jump_steps],
        "no_jump": bool(no_jump),
        "continues": bool(continues),
        "keeps_object": bool(keeps),
        "coherent": bool(no_jump and continues and keeps),
        "track": m["track"],
    }
