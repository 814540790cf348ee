"""TGIF as released.

Layout::

    ROOT/tgif-v1.0.tsv     <gif url>\\t<description>   (a GIF may have several lines: captions merge)
    ROOT/gifs/<basename of the url>
"""

from __future__ import annotations

from manifests.builders.common import (
    VIDEO_EXTENSIONS,
    BuildResult,
    FileIndex,
    read_text,
    require_file,
    video_row,
)
from manifests.schema import RejectReason

SOURCE = "tgif"


def build(root: str) -> BuildResult:
    """Source manifest of TGIF under ``root``."""
    path = require_file(root, "tgif-v1.0.tsv", "data/tgif-v1.0.tsv")
    files = FileIndex(root, VIDEO_EXTENSIONS)
    out = BuildResult()
    captions: dict[str, list[str]] = {}
    first_line: dict[str, str] = {}
    for line, text in enumerate(read_text(path, root).splitlines(), start=1):
        if not text.strip():
            continue
        where = f"{path}:{line}"
        parts = text.split("\t")
        if len(parts) < 2 or not parts[0].strip():
            out.reject(where, SOURCE, RejectReason.BAD_ANNOTATION, f"{where}: expected <url>\\t<description>")
            continue
        url, desc = parts[0].strip(), "\t".join(parts[1:]).strip()
        captions.setdefault(url, [])
        first_line.setdefault(url, where)
        if desc:
            captions[url].append(desc)
    for url, caps in captions.items():
        name = url.rstrip("/").rsplit("/", 1)[-1]
        gid = name.rsplit(".", 1)[0]
        uri = files.rel(f"gifs/{name}") or files.stem(gid)
        if uri is None:
            out.reject(gid, SOURCE, RejectReason.MISSING_FILE, f"{first_line[url]}: no file gifs/{name}", url)
            continue
        out.rows.append(video_row(id=gid, uri=uri, source=SOURCE, captions=caps, where=first_line[url]))
    return out
