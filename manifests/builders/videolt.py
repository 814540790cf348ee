"""VideoLT (long-tailed untrimmed videos).

Layout this builder reads (the label lists as the dataset ships them)::

    ROOT/label/label_names.txt          one class name per line; line i is class i
                                        (``<i> <name>`` or ``<i>,<name>`` lines are accepted too)
    ROOT/label/{train,val,test}.lst     <video_name> <class_id>[,<class_id>...]
    ROOT/videos/<video_name>.<ext>      (any depth under ROOT works: files are found by name)

A video with several classes gets them joined with ", " as its label, which is also what the
CLIP relevance score is computed against.
"""

from __future__ import annotations

import re

from manifests.builders.common import (
    VIDEO_EXTENSIONS,
    BuildResult,
    FileIndex,
    ManifestBuildError,
    read_text,
    require_file,
    video_row,
)
from manifests.io import url_to_fs
from manifests.schema import RejectReason

SOURCE = "videolt"
_NUMBERED = re.compile(r"^(\d+)[\s,]+(.+)$")


def read_label_names(path: str, root: str) -> dict[int, str]:
    """Class id -> name from ``label_names.txt``."""
    names: dict[int, str] = {}
    lines = [ln.strip() for ln in read_text(path, root).splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        m = _NUMBERED.match(ln)
        if m:
            names[int(m.group(1))] = m.group(2).strip()
        else:
            names[i] = ln
    return names


def build(root: str) -> BuildResult:
    """Source manifest of VideoLT under ``root``."""
    fs, base = url_to_fs(root)
    names_path = require_file(root, "label/label_names.txt", "label_names.txt")
    names = read_label_names(names_path, root)
    lists = sorted(fs.glob(f"{base}/label/*.lst"))
    if not lists:
        raise ManifestBuildError(f"{root}/label/*.lst not found: expected train.lst / val.lst / test.lst")
    files = FileIndex(root, VIDEO_EXTENSIONS)
    out = BuildResult()
    for path in lists:
        split = path.rsplit("/", 1)[-1][: -len(".lst")]
        for line, text in enumerate(read_text(path, root).splitlines(), start=1):
            text = text.strip()
            if not text:
                continue
            where = f"{path}:{line}"
            parts = text.split(None, 1)
            name = parts[0]
            base_name = name.rsplit("/", 1)[-1]
            # Only a video extension is an extension: "clip.v2" is a name with a dot, not "clip" + ".v2".
            stem, dot, ext = base_name.rpartition(".")
            vid = stem if dot and f".{ext.lower()}" in VIDEO_EXTENSIONS else base_name
            labels: list[str] = []
            if len(parts) > 1:
                try:
                    ids = [int(x) for x in re.split(r"[,\s]+", parts[1].strip()) if x]
                except ValueError:
                    out.reject(vid, SOURCE, RejectReason.BAD_ANNOTATION, f"{where}: class ids must be integers")
                    continue
                unknown = [i for i in ids if i not in names]
                if unknown:
                    out.reject(vid, SOURCE, RejectReason.BAD_ANNOTATION, f"{where}: unknown class ids {unknown}")
                    continue
                labels = [names[i] for i in ids]
            uri = files.rel(name) or files.stem(vid) or files.stem(base_name)
            if uri is None:
                out.reject(vid, SOURCE, RejectReason.MISSING_FILE, f"{where}: no video file named {vid}.*")
                continue
            out.rows.append(
                video_row(id=vid, uri=uri, source=SOURCE, label=", ".join(labels) or None, split=split, where=where)
            )
    return out
