"""Pictures of samples: contact sheets (PNG) and a static HTML gallery."""

from __future__ import annotations

import html
import io
import posixpath
import textwrap
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from manifests.io import url_to_fs


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


def save_image(img: Image.Image, path: str, fmt: str | None = None) -> None:
    """Write a PIL image to a local path or fsspec URL."""
    fs, p = url_to_fs(path)
    parent = posixpath.dirname(p)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    buf = io.BytesIO()
    img.save(buf, format=fmt or ("PNG" if p.lower().endswith(".png") else "JPEG"), quality=85)
    with fs.open(p, "wb") as f:
        f.write(buf.getvalue())


GALLERY_HEAD = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:sans-serif;margin:16px;background:#fafafa}}
.s{{background:#fff;border:1px solid #ddd;margin:0 0 12px;padding:8px}}
.s img{{display:block;max-width:100%}} .k{{font-family:monospace;color:#555;font-size:12px}}
.bad{{color:#b00}}
</style></head><body><h1>{title}</h1><p>{summary}</p>
"""


def gallery_entry(key: str, thumb_rel: str | None, caption: str, meta_line: str, error: str | None) -> str:
    """One sample's block in the gallery page."""
    img = f'<img src="{html.escape(thumb_rel)}" alt="{html.escape(key)}">' if thumb_rel else ""
    err = f'<div class="bad">{html.escape(error)}</div>' if error else ""
    return (
        f'<div class="s" id="{html.escape(key)}">{img}<div>{html.escape(caption)}</div>'
        f'<div class="k">{html.escape(key)} · {html.escape(meta_line)}</div>{err}</div>\n'
    )
