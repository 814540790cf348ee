"""Pictures of samples: contact sheets (PNG) and a static HTML gallery."""

from __future__ import annotations

import hashlib
import html
import io
import textwrap
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from manifests.io import write_atomic
from shards.reader import is_number


def terminal_text(text: object) -> str:
    """``text`` safe to print to a terminal: every control and format character (ESC sequences that retitle the
    window, clear the screen or hide what follows; carriage returns and newlines that forge other lines; C1
    controls; bidirectional overrides) is shown as its Python escape instead of acting. Captions, keys and shard
    paths are data, and anyone who made the shard chose them."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() or c == " " else _escape_char(c) for c in s)


def _escape_char(c: str) -> str:
    code = ord(c)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def even_indices(total: int, n: int) -> list[int]:
    """``n`` frame indices spread evenly over ``total`` frames (all of them when fewer)."""
    if total <= n:
        return list(range(total))
    return [round(i * (total - 1) / (n - 1)) for i in range(n)] if n > 1 else [0]


def _fit(frame: np.ndarray, height: int) -> Image.Image:
    img = Image.fromarray(frame)
    w = max(1, round(img.width * height / img.height))
    return img.resize((w, height), Image.BILINEAR)


def contact_sheet(
    frames: np.ndarray,
    indices: list[int],
    fps: float,
    title: str,
    caption: str,
    columns: int = 4,
    tile_height: int = 160,
) -> Image.Image:
    """A grid of frames labelled with frame number and time, under a title and the wrapped caption."""
    font = ImageFont.load_default()
    tiles = [_fit(f, tile_height) for f in frames]
    tw = max(t.width for t in tiles)
    cols = min(columns, len(tiles))
    rows = (len(tiles) + cols - 1) // cols
    lines = [title, *textwrap.wrap(caption, width=max(40, cols * tw // 7))[:4]]
    header = 14 * len(lines) + 8
    sheet = Image.new("RGB", (cols * tw + (cols + 1) * 4, header + rows * (tile_height + 18) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for i, line in enumerate(lines):
        draw.text((6, 4 + 14 * i), line, fill="black", font=font)
    for n, (tile, idx) in enumerate(zip(tiles, indices, strict=True)):
        r, c = divmod(n, cols)
        x, y = 4 + c * (tw + 4), header + r * (tile_height + 18)
        sheet.paste(tile, (x, y))
        t = f"frame {idx}" + (f"  t={idx / fps:.2f}s" if fps else "")
        draw.text((x, y + tile_height + 3), t, fill="black", font=font)
    return sheet


def strip(frames: Iterable[np.ndarray], height: int = 96) -> Image.Image:
    """Frames side by side at a common height."""
    tiles = [_fit(f, height) for f in frames]
    out = Image.new("RGB", (sum(t.width for t in tiles) + 2 * (len(tiles) - 1), height), "white")
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.width + 2
    return out


KEPT, LOW_CLIP, NOT_RELEVANT = (46, 160, 67), (190, 190, 190), (230, 140, 40)


def timeline_problem(tl: object) -> str | None:
    """Why ``tl`` is not a drawable ``timeline`` record (None when it is). Metadata is data: a shard can hold any
    JSON under that name, and ``show`` must say so in a line rather than fail inside the drawing."""
    if not isinstance(tl, dict):
        return f"not an object but {type(tl).__name__}"
    lists = {name: tl.get(name) for name in ("times", "keep", "clip_score", "p_yes")}
    for name, v in lists.items():
        if not isinstance(v, list):
            return f"{name} is not a list"
    n = len(lists["times"])
    if not all(is_number(t) and t >= 0 for t in lists["times"]):
        return "times holds something that is not a non-negative number"
    if len(lists["keep"]) != n or len(lists["p_yes"]) != n or len(lists["clip_score"]) not in (0, n):
        return f"times, keep, clip_score and p_yes differ in length ({', '.join(str(len(v)) for v in lists.values())})"
    if not all(isinstance(k, bool | int) for k in lists["keep"]):
        return "keep holds something that is not a flag"
    if not all(is_number(v) for v in lists["clip_score"]) or not all(p is None or is_number(p) for p in lists["p_yes"]):
        return "clip_score or p_yes holds something that is not a number"
    segments = tl.get("segments", [])
    if not isinstance(segments, list) or not all(
        isinstance(g, dict) and is_number(g.get("start")) and is_number(g.get("end")) for g in segments
    ):
        return "segments is not a list of {start, end} numbers"
    return None


def timeline(tl: dict, current: tuple[float, float] | None = None, width: int = 800) -> Image.Image:
    """A long video's segmentation (``long-videos``' ``timeline`` record): one bar per sampled frame,
    green kept, grey dropped by CLIP, orange dropped by MiniGPT-4; the CLIP score as a line over it;
    segments boxed, ``current`` (start, end) in blue. ``tl`` must pass :func:`timeline_problem`."""
    times, keep = tl["times"], tl["keep"]
    scores, p_yes = tl["clip_score"], tl["p_yes"]
    end = max([*times, *(s["end"] for s in tl.get("segments", []))], default=1.0) or 1.0
    font = ImageFont.load_default()
    h_bar, top, left = 26, 18, 6
    img = Image.new("RGB", (width, top + h_bar + 40), "white")
    draw = ImageDraw.Draw(img)
    span = width - 2 * left

    def x(t: float) -> int:
        return left + round(t / end * span)

    nxt = [*times[1:], end]
    for t, t2, k, p in zip(times, nxt, keep, p_yes, strict=True):
        colour = KEPT if k else (LOW_CLIP if p is None else NOT_RELEVANT)
        draw.rectangle([x(t), top, max(x(t), x(t2) - 1), top + h_bar], fill=colour)
    if scores:
        lo, hi = min(scores), max(scores)
        ys = [top + h_bar - round((s - lo) / ((hi - lo) or 1.0) * h_bar) for s in scores]
        draw.line([(x(t), y) for t, y in zip(times, ys, strict=True)], fill="black", width=1)
    for seg in tl.get("segments", []):
        draw.rectangle([x(seg["start"]), top - 3, x(seg["end"]), top + h_bar + 3], outline=(80, 80, 80))
    if current is not None:
        draw.rectangle([x(current[0]), top - 5, x(current[1]), top + h_bar + 5], outline=(30, 90, 220), width=3)
    kept = sum(1 for k in keep if k)
    draw.text((left, 3), f"timeline: {kept}/{len(keep)} sampled frames kept, {len(tl.get('segments', []))} segments, "
              f"0-{end:.1f} s (line: CLIP score)", fill="black", font=font)  # fmt: skip
    legend = [("kept", KEPT), ("low CLIP score", LOW_CLIP), ("MiniGPT-4: not relevant", NOT_RELEVANT)]
    xx = left
    for name, colour in legend:
        draw.rectangle([xx, top + h_bar + 14, xx + 10, top + h_bar + 24], fill=colour)
        draw.text((xx + 14, top + h_bar + 13), name, fill="black", font=font)
        xx += 30 + 7 * len(name)
    return img


def stack(images: list[Image.Image]) -> Image.Image:
    """Images one under the other on white."""
    out = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    y = 0
    for i in images:
        out.paste(i, (0, y))
        y += i.height
    return out


def save_image(img: Image.Image, path: str, fmt: str | None = None) -> None:
    """Write a PIL image to a local path or fsspec URL, whole, replacing (never writing through) a link there."""
    buf = io.BytesIO()
    img.save(buf, format=fmt or ("PNG" if path.lower().endswith(".png") else "JPEG"), quality=85)
    data = buf.getvalue()
    write_atomic(path, lambda f: f.write(data))


_GALLERY_HEAD = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:sans-serif;margin:16px;background:#fafafa}}
.s{{background:#fff;border:1px solid #ddd;margin:0 0 12px;padding:8px}}
.s img{{display:block;max-width:100%}} .k{{font-family:monospace;color:#555;font-size:12px}}
.bad{{color:#b00}}
</style></head><body><h1>{title}</h1><p>{summary}</p>
"""


def gallery_head(title: str, summary: str) -> str:
    """The page's head and heading. Both texts are escaped here, the one place they enter the page: the title
    carries the set's path and the summary a ``--where`` text, and a folder named ``<img src=x onerror=...>``
    must show as text, not run."""
    return _GALLERY_HEAD.format(title=html.escape(title), summary=html.escape(summary))


def thumb_name(key: str, n: int) -> str:
    """A thumbnail's path inside the gallery folder, never derived from the key's characters: a member name
    such as ``../../x`` or ``/etc/x`` (tar headers hold anything) or a 300-character key stays a short file
    directly under ``thumbs/``. The sample's number keeps names unique; the hash keeps them stable per key."""
    digest = hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"thumbs/{n:06d}-{digest}.jpg"


def gallery_entry(key: str, thumb_rel: str | None, caption: str, meta_line: str, error: str | None) -> str:
    """One sample's block in the gallery page."""
    img = f'<img src="{html.escape(thumb_rel)}" alt="{html.escape(key)}">' if thumb_rel else ""
    err = f'<div class="bad">{html.escape(error)}</div>' if error else ""
    return (
        f'<div class="s" id="{html.escape(key)}">{img}<div>{html.escape(caption)}</div>'
        f'<div class="k">{html.escape(key)} · {html.escape(meta_line)}</div>{err}</div>\n'
    )
