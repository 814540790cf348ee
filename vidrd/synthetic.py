"""Small synthetic datasets laid out exactly as each real dataset ships, for the demo and the tests.

Videos show a coloured square moving in a stated direction, so a caption like "a red square moving
right" is true of its video. Every layout also contains the kinds of flaw real releases have (an
annotation row whose file is missing), so the counts of the builders can be checked.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from media.video import encode_mp4

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}
DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}


def moving_square(
    colour: str, direction: str, frames: int = 32, width: int = 64, height: int = 48, seed: int = 0
) -> np.ndarray:
    """``[F, H, W, 3]`` uint8 frames of a square of ``colour`` moving ``direction`` on a textured background."""
    rng = np.random.default_rng(seed)
    bg = (rng.integers(0, 60, size=(height, width, 3)) + 100).astype(np.uint8)
    out = np.repeat(bg[None], frames, axis=0)
    side = max(4, min(width, height) // 4)
    dx, dy = DIRECTIONS[direction]
    x0, y0 = (width - side) // 2, (height - side) // 2
    span_x, span_y = (width - side) // 2, (height - side) // 2
    for t in range(frames):
        f = t / max(1, frames - 1) - 0.5
        x = round(x0 + dx * f * 2 * span_x * 0.9)
        y = round(y0 + dy * f * 2 * span_y * 0.9)
        out[t, y : y + side, x : x + side] = COLOURS[colour]
    return out


SHAPES = ("square", "circle")


def smooth_texture(size: int, rng: np.random.Generator, cells: int = 6) -> np.ndarray:
    """``[S, S, 3]`` grey texture: a ``cells`` x ``cells`` grid of random levels in [100, 160] upsampled bicubically.
    Smooth like a wall or a floor, unlike per-pixel noise, which no autoencoder or denoiser should have to learn."""
    grid = rng.integers(100, 161, size=(cells, cells)).astype(np.uint8)
    grey = np.asarray(Image.fromarray(grid, mode="L").resize((size, size), Image.Resampling.BICUBIC))
    return np.repeat(grey[:, :, None], 3, axis=2)


def footage_texture(seed: int, width: int = 600, height: int = 400) -> Image.Image:
    """A colour image with detail at every scale (random noise at four scales, summed and stretched): closer to
    camera footage than flat squares, which is what a learned shot detector was trained on."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.float32)
    for s in (4, 12, 40, 120):
        noise = rng.standard_normal((2 * s, 3 * s, 3)).astype(np.float32)
        img += cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC) * (120 / s**0.5)
    return Image.fromarray(((img - img.min()) / (img.max() - img.min()) * 255).astype(np.uint8))


BACKGROUNDS = ("flat", "textured")


def background_image(background: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """``[S, S, 3]`` uint8 grey background that stays put: one random level (``flat``) or :func:`smooth_texture`."""
    if background == "flat":
        return np.full((size, size, 3), int(rng.integers(90, 170)), dtype=np.uint8)
    return smooth_texture(size, rng)


def moving_shape(
    colour: str,
    direction: str,
    shape: str = "square",
    frames: int = 32,
    size: int = 64,
    speed: float = 1.0,
    background: str = "textured",
    seed: int = 0,
) -> np.ndarray:
    """``[F, S, S, 3]`` uint8 frames of a ``shape`` of ``colour`` moving ``direction`` at ``speed`` pixels per
    frame, centred on the middle of its path, on a grey ``background`` (flat, or a smooth texture) that stays put.

    The object is drawn whole in every frame (the path is clamped to the frame), so a measurement knows where
    it is and what it should look like at every frame.
    """
    if shape not in SHAPES or background not in BACKGROUNDS or colour not in COLOURS or direction not in DIRECTIONS:
        raise ValueError(f"unknown shape/background/colour/direction: {shape}, {background}, {colour}, {direction}")
    rng = np.random.default_rng(seed)
    out = np.repeat(background_image(background, size, rng)[None], frames, axis=0)
    side = max(4, size // 5)
    dx, dy = DIRECTIONS[direction]
    # The path's middle is the frame's centre, shifted at random across the motion by up to a quarter frame.
    jitter = float(rng.uniform(-0.25, 0.25)) * size
    cx, cy = size / 2 + (jitter if dx == 0 else 0.0), size / 2 + (jitter if dy == 0 else 0.0)
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    lo, hi = side / 2, size - side / 2
    for t in range(frames):
        step = (t - (frames - 1) / 2) * speed
        x, y = float(np.clip(cx + dx * step, lo, hi)), float(np.clip(cy + dy * step, lo, hi))
        if shape == "square":
            mask = (np.abs(xs - x) <= side / 2) & (np.abs(ys - y) <= side / 2)
        else:
            mask = (xs - x) ** 2 + (ys - y) ** 2 <= (side / 2 + 0.5) ** 2
        out[t][mask] = COLOURS[colour]
    return out


def travel_frames(size: int, speed: float, side: int | None = None, margin: float = 1.0) -> int:
    """Frames :func:`travelling_shape` takes to carry an object of ``side`` px across a ``size`` px frame at ``speed``
    px per frame, fully in view from the first frame to the last."""
    side = object_side(size) if side is None else side
    span = size - side - 2 * margin
    if span <= 0 or speed <= 0:
        raise ValueError(f"an object of {side} px cannot travel in a {size} px frame at speed {speed}")
    return int(span // speed) + 1


def object_side(size: int) -> int:
    """The object's size (square side, circle diameter) in a ``size`` px frame: a sixth of it, at least 4 px."""
    return max(4, round(size / 6))


def travelling_shape(
    colour: str,
    direction: str,
    shape: str = "square",
    size: int = 64,
    speed: float = 0.5,
    background: str = "textured",
    seed: int = 0,
    side: int | None = None,
    margin: float = 1.0,
    supersample: int = 4,
) -> np.ndarray:
    """``[F, S, S, 3]`` uint8 frames of a ``shape`` of ``colour`` crossing the whole frame along ``direction`` at a
    steady ``speed`` px per frame: it starts fully in view ``margin`` px from one edge and ends fully in view at the
    other, ``F = travel_frames(...)``. The motion is several training clips long, so a clip cut from a random start
    can begin anywhere along it (what the paper's loader does with real videos), and no position belongs to a
    frame index.

    Drawn anti-aliased (each pixel's colour mixed by the share of ``supersample`` x ``supersample`` sub-pixels the
    object covers): a motion of less than a pixel per frame shows in every frame, not as a one-pixel step every few
    frames. Across the motion the path sits at a random offset of up to a quarter frame from the centre.
    """
    if shape not in SHAPES or background not in BACKGROUNDS or colour not in COLOURS or direction not in DIRECTIONS:
        raise ValueError(f"unknown shape/background/colour/direction: {shape}, {background}, {colour}, {direction}")
    side = object_side(size) if side is None else side
    frames = travel_frames(size, speed, side, margin)
    rng = np.random.default_rng(seed)
    bg = background_image(background, size, rng)
    dx, dy = DIRECTIONS[direction]
    across = size / 2 + float(rng.uniform(-0.25, 0.25)) * size
    lo = side / 2 + margin
    k = supersample
    sub = (np.arange(size * k) + 0.5) / k  # sub-pixel centres
    ys, xs = np.meshgrid(sub, sub, indexing="ij")
    rgb = np.array(COLOURS[colour], dtype=np.float32)
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        along = lo + t * speed if dx + dy > 0 else size - lo - t * speed
        x, y = (along, across) if dx else (across, along)
        if shape == "square":
            inside = (np.abs(xs - x) <= side / 2) & (np.abs(ys - y) <= side / 2)
        else:
            inside = (xs - x) ** 2 + (ys - y) ** 2 <= (side / 2) ** 2
        cover = inside.reshape(size, k, size, k).mean(axis=(1, 3))[..., None]
        out[t] = np.round(bg * (1 - cover) + rgb * cover).astype(np.uint8)
    return out


def write_webvid(root: Path, clips: list[tuple[str, np.ndarray, str]], fps: float = 8.0, page_dir: str = "000") -> None:
    """``clips`` of (video id, frames, caption) in WebVid's published layout: ``results_2M_train.csv`` and
    ``videos/<page_dir>/<videoid>.mp4``."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for vid, frames, text in clips:
        write_video(root / "videos" / page_dir / f"{vid}.mp4", frames, fps)
        seconds = max(1, round(len(frames) / fps))
        rows.append((vid, f"https://example.invalid/{vid}.mp4", f"PT00H00M{seconds:02d}S", page_dir, text))
    with open(root / "results_2M_train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["videoid", "contentUrl", "duration", "page_dir", "name"])
        w.writerows(rows)


def write_video(path: Path, frames: np.ndarray, fps: float = 24.0) -> None:
    """Write frames as H.264 MP4 (or GIF when ``path`` ends in .gif)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gif":
        imgs = [Image.fromarray(f) for f in frames]
        imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)
        return
    path.write_bytes(encode_mp4(frames, fps))


def _combos(n: int) -> list[tuple[str, str]]:
    cs, ds = list(COLOURS), list(DIRECTIONS)
    return [(cs[i % len(cs)], ds[(i // len(cs) + i) % len(ds)]) for i in range(n)]


def make_kinetics(root: Path, n: int = 4, frames: int = 32) -> None:
    """``annotations/{train,validate}.csv`` + ``train/<label>/<ytid>_<s>_<e>.mp4``; one row has no file."""
    ann = root / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (c, d) in enumerate(_combos(n)):
        label = f"moving {d}"
        yt = f"yt{i:03d}Ab-x"
        rows.append((label, yt, 10, 20, "train"))
        write_video(root / "train" / label / f"{yt}_000010_000020.mp4", moving_square(c, d, frames, seed=i))
    rows.append(("moving up", "missingClip", 0, 10, "train"))
    with open(ann / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        w.writerows(rows)


def make_moments(root: Path, n: int = 4, frames: int = 32) -> None:
    """``trainingSet.csv`` + ``training/<label>/<file>``; one row has no file."""
    lines = []
    for i, (c, d) in enumerate(_combos(n)):
        label = ["sliding", "falling", "rising", "drifting"][i % 4]
        rel = f"{label}/clip_{i}.mp4"
        write_video(root / "training" / rel, moving_square(c, d, frames, seed=10 + i))
        lines.append(f"{rel},{label},3,0")
    lines.append("falling/not_there.mp4,falling,3,0")
    root.mkdir(parents=True, exist_ok=True)
    (root / "trainingSet.csv").write_text("\n".join(lines) + "\n")


def make_videolt(root: Path, n: int = 2, frames: int = 96) -> None:
    """``label/label_names.txt``, ``label/train.lst`` and ``videos/*.mp4`` (long-ish videos)."""
    (root / "label").mkdir(parents=True, exist_ok=True)
    (root / "label" / "label_names.txt").write_text("square\ncircle\nsliding block\n")
    lines = []
    for i, (c, d) in enumerate(_combos(n)):
        vid = f"lt_{i:04d}"
        write_video(root / "videos" / f"{vid}.mp4", moving_square(c, d, frames, seed=20 + i))
        lines.append(f"{vid} {i % 3},2")
    lines.append("lt_gone 0")
    (root / "label" / "train.lst").write_text("\n".join(lines) + "\n")


def make_laion(root: Path, n: int = 4) -> None:
    """img2dataset ``00000/<key>.jpg|.txt|.json`` plus ``00000.parquet`` with one failed download."""
    shard = root / "00000"
    shard.mkdir(parents=True, exist_ok=True)
    keys, status = [], []
    for i, (c, d) in enumerate(_combos(n)):
        key = f"{i:09d}"
        frame = moving_square(c, d, frames=1, width=384, height=288, seed=30 + i)[0]
        Image.fromarray(frame).save(shard / f"{key}.jpg", quality=90)
        (shard / f"{key}.txt").write_text(f"a {c} square on a grey textured background")
        (shard / f"{key}.json").write_text(json.dumps({"key": key, "width": 384, "height": 288}))
        keys.append(key)
        status.append("success")
    keys.append(f"{n:09d}")
    status.append("failed_to_download")
    pq.write_table(
        pa.table({"key": keys, "status": status, "url": [f"http://x/{k}" for k in keys]}), root / "00000.parquet"
    )


def make_webvid(root: Path, n: int = 4, frames: int = 32) -> None:
    """``results_2M_train.csv`` + ``videos/<page_dir>/<videoid>.mp4``; one too long, one missing."""
    rows = []
    for i, (c, d) in enumerate(_combos(n)):
        vid = str(1000 + i)
        write_video(root / "videos" / "001" / f"{vid}.mp4", moving_square(c, d, frames, seed=40 + i))
        dur = "PT00H00M25S" if i == n - 1 else "PT00H00M01S"
        rows.append((vid, f"http://x/{vid}.mp4", dur, "001", f"a {c} square moving {d}"))
    rows.append(("9999", "http://x/9999.mp4", "PT00H00M05S", "001", "missing video"))
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "results_2M_train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["videoid", "contentUrl", "duration", "page_dir", "name"])
        w.writerows(rows)


def make_tgif(root: Path, n: int = 3, frames: int = 32) -> None:
    """``tgif-v1.0.tsv`` + ``gifs/*.gif``; the first GIF has two captions."""
    lines = []
    for i, (c, d) in enumerate(_combos(n)):
        name = f"tumblr_{i:04d}.gif"
        write_video(root / "gifs" / name, moving_square(c, d, frames, seed=50 + i), fps=12)
        lines.append(f"https://38.media.tumblr.com/{name}\ta {c} square moves {d}")
    lines.append(f"https://38.media.tumblr.com/tumblr_0000.gif\tthe {_combos(1)[0][0]} block slides")
    root.mkdir(parents=True, exist_ok=True)
    (root / "tgif-v1.0.tsv").write_text("\n".join(lines) + "\n")


def make_vatex(root: Path, n: int = 3, frames: int = 32) -> None:
    """``vatex_training_v1.0.json`` with several English captions per video + ``videos/*.mp4``."""
    items = []
    for i, (c, d) in enumerate(_combos(n)):
        vid = f"vx{i:03d}-AbC_000005_000015"
        write_video(root / "videos" / f"{vid}.mp4", moving_square(c, d, frames, seed=60 + i))
        items.append(
            {
                "videoID": vid,
                "enCap": [
                    f"a {c} square moves {d}",
                    f"a {c} block going {d}",
                    f"something {c} travels {d} across the frame",
                ],
            }
        )
    items.append({"videoID": "vxgone_000000_000010", "enCap": ["lost"]})
    root.mkdir(parents=True, exist_ok=True)
    (root / "vatex_training_v1.0.json").write_text(json.dumps(items))


def make_pexels(root: Path, n: int = 3, frames: int = 32) -> None:
    """``PexelVideos.parquet`` (id, title, duration, width, height) + ``videos/<id>.mp4``."""
    ids, titles = [], []
    for i, (c, d) in enumerate(_combos(n)):
        vid = str(500 + i)
        write_video(root / "videos" / f"{vid}.mp4", moving_square(c, d, frames, seed=70 + i))
        ids.append(vid)
        titles.append(f"{c.title()} square moving {d}")
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({"id": ids, "title": titles, "duration": [frames / 24.0] * n, "width": [64] * n, "height": [48] * n}),
        root / "PexelVideos.parquet",
    )


MAKERS: dict[str, Callable[[Path], None]] = {
    "kinetics700": make_kinetics,
    "moments": make_moments,
    "videolt": make_videolt,
    "laion": make_laion,
    "webvid": make_webvid,
    "tgif": make_tgif,
    "vatex": make_vatex,
    "pexels": make_pexels,
}


def make_all(root: str | os.PathLike) -> dict[str, Path]:
    """Write every synthetic dataset under ``root/<source>``; returns source -> folder."""
    base = Path(root)
    out = {}
    for source, make in MAKERS.items():
        make(base / source)
        out[source] = base / source
    return out
