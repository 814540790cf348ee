"""Inputs for the curation tests: good media and every kind of bad input, plus manifests over them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from manifests.io import rows_to_table
from manifests.schema import SOURCE_SCHEMA
from media.video import encode_mp4
from vidrd.synthetic import moving_square, write_video


def row(id: str, uri: str, source: str = "webvid", kind: str = "video", **kw: Any) -> dict[str, Any]:
    base = dict(id=id, uri=uri, kind=kind, source=source, label=None, captions=[f"caption of {id}"],
                duration=None, fps=None, width=None, height=None, split=None, start=None, end=None)  # fmt: skip
    return {**base, **kw}


def outcome(stage: Any, r: dict[str, Any]) -> tuple[str, Any]:
    """("ok", samples) or (reject reason, message) of ``stage.process(r)``."""
    from curation.stage import Rejected

    try:
        return "ok", stage.process(r)
    except Rejected as e:
        return e.reason.value, e.message


def write_manifest(path: Path, rows: list[dict[str, Any]]) -> Path:
    pq.write_table(rows_to_table(rows, SOURCE_SCHEMA), path)
    return path


def video_corpus(d: Path) -> list[dict[str, Any]]:
    """Good and bad videos; each row's ``expect`` is the reject reason or "ok"."""
    d.mkdir(parents=True, exist_ok=True)
    rows = []

    def add(name: str, expect: str, **kw: Any) -> None:
        rows.append({**row(name, str(d / f"{name}.mp4") if "uri" not in kw else kw.pop("uri"), **kw), "expect": expect})

    write_video(d / "good.mp4", moving_square("red", "right", 32), fps=24)
    add("good", "ok", duration=1.3)
    add("long_webvid", "too_long", duration=25.0, uri=str(d / "good.mp4"))
    (d / "vatex.mp4").write_bytes((d / "good.mp4").read_bytes())
    add("vatex", "ok", source="vatex", captions=["a red square", "a red block moves", "red thing going right"])
    write_video(d / "odd.mp4", moving_square("blue", "up", 32, width=67, height=41), fps=24)
    add("odd", "ok")
    write_video(d / "portrait.mp4", moving_square("green", "down", 32, width=36, height=80), fps=24)
    add("portrait", "ok")
    write_video(d / "wide.mp4", moving_square("yellow", "left", 32, width=200, height=30), fps=24)
    add("wide", "ok")
    write_video(d / "fast.mp4", moving_square("red", "up", 60), fps=120)
    add("fast", "ok")
    write_video(d / "one_frame.mp4", moving_square("red", "up", 1), fps=24)
    add("one_frame", "too_short")
    write_video(d / "short.mp4", moving_square("red", "up", 20), fps=24)
    add("short", "too_short")
    data = (d / "good.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    add("truncated", "undecodable")
    (d / "empty.mp4").write_bytes(b"")
    add("empty", "empty_file")
    (d / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    add("random", "undecodable")
    (d / "page.mp4").write_bytes(b"<!DOCTYPE html><html><body>404 not found</body></html>")
    add("page", "not_a_video")
    add("missing", "missing_file")
    add("no_caption", "no_caption", captions=["  "], uri=str(d / "good.mp4"))
    write_video(d / "tgif.gif", moving_square("green", "right", 32), fps=12)
    rows.append({**row("tgif_one", str(d / "tgif.gif"), source="tgif"), "expect": "ok"})
    add("unicode", "ok", captions=["un carré rouge qui bouge → vers la droite 🚀 " * 20], uri=str(d / "good.mp4"))
    add("trimmed", "ok", source="vatex", start=0.1, end=1.3, uri=str(d / "good.mp4"))
    return rows


def jpeg(img: Image.Image, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def image_corpus(d: Path) -> list[dict[str, Any]]:
    """Images of every awkward kind; ``expect`` as in :func:`video_corpus`."""
    d.mkdir(parents=True, exist_ok=True)
    base = Image.fromarray(moving_square("red", "right", 1, width=400, height=300)[0])
    rows = []

    def add(name: str, data: bytes, expect: str, ext: str = "jpg", **kw: Any) -> None:
        p = d / f"{name}.{ext}"
        p.write_bytes(data)
        rows.append({**row(name, str(p), source="laion", kind="image", **kw), "expect": expect})

    add("rgb", jpeg(base), "ok")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    add("exif_rotated", jpeg(base, exif=exif), "ok")
    add("gray", jpeg(base.convert("L")), "ok")
    buf = io.BytesIO()
    base.convert("P", palette=Image.ADAPTIVE).save(buf, format="PNG")
    add("palette", buf.getvalue(), "ok", "png")
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    add("alpha", buf.getvalue(), "ok", "png")
    add("cmyk", jpeg(base.convert("CMYK")), "ok")
    add("tiny", jpeg(base.resize((100, 80))), "too_small")
    add("html", b"<html><head><title>Forbidden</title></head></html>", "not_an_image")
    add("truncated", jpeg(base)[:400], "undecodable")
    add("empty", b"", "empty_file")
    add("junk", bytes(range(256)) * 8, "not_an_image")
    add("no_caption", jpeg(base), "no_caption", captions=[])
    return rows


def tiny_mp4(frames: int = 32) -> bytes:
    return encode_mp4(moving_square("red", "right", frames), 24.0)


def stored_rotated(upright: np.ndarray, degrees: int, fps: float = 8.0) -> bytes:
    """``upright`` frames stored as a phone stores them: pixels turned, plus a display matrix saying how to turn
    them back (``degrees`` counter-clockwise, as FFmpeg reads it)."""
    import av

    stored = np.rot90(upright, -degrees // 90, axes=(1, 2))
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=int(fps))
        s.width, s.height, s.pix_fmt = stored.shape[2], stored.shape[1], "yuv420p"
        s.set_display_rotation(degrees)
        for f in stored:
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        c.mux(s.encode())
    return buf.getvalue()
