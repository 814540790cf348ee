"""Sample keys: the ``__key__`` of a WebDataset sample.

WebDataset splits a tar member name at the first dot into key and extension, and a slash would
make a directory, so keys are restricted to ``[A-Za-z0-9_-]``. A key is derived only from the
source, the source id and the segment number, so a re-run produces the same keys. Ids that needed
sanitising get a short hash of the original id so that two ids that sanitise alike stay distinct.
"""

from __future__ import annotations

import hashlib
import re

_ALLOWED = re.compile(r"^[A-Za-z0-9_-]+$")
_DISALLOWED_RUN = re.compile(r"[^A-Za-z0-9_-]+")
MAX_ID_CHARS = 96


class InvalidKeyError(ValueError):
    """A sample key contains characters WebDataset would misread."""


def is_valid_key(key: str) -> bool:
    """True when ``key`` is non-empty and made only of ``[A-Za-z0-9_-]``."""
    return bool(_ALLOWED.match(key))


def check_key(key: str) -> str:
    """Return ``key`` or raise :class:`InvalidKeyError` naming the offending characters."""
    if not is_valid_key(key):
        bad = sorted({c for c in key if not _ALLOWED.match(c)})
        raise InvalidKeyError(
            f"invalid sample key {key!r}: only [A-Za-z0-9_-] are allowed (found {bad or 'empty key'}); "
            "WebDataset splits keys at the first dot and treats slashes as folders"
        )
    return key


def make_key(source: str, source_id: str, segment: int | None = None, piece: int | None = None) -> str:
    """Deterministic key for a sample of ``source`` made from raw item ``source_id``.

    ``segment`` distinguishes several samples cut from one raw item (VideoLT segments, the shots of a video split at
    its cuts); ``piece`` the shots of one segment split at its cuts (``-sNNNN-pNNN``).
    """
    clean = _DISALLOWED_RUN.sub("_", source_id).strip("_")[:MAX_ID_CHARS]
    if clean != source_id or not clean:
        digest = hashlib.sha1(source_id.encode("utf-8")).hexdigest()[:10]
        clean = f"{clean}_{digest}" if clean else digest
    src = _DISALLOWED_RUN.sub("_", source)
    key = f"{src}-{clean}"
    if segment is not None:
        key = f"{key}-s{segment:04d}"
    if piece is not None:
        key = f"{key}-p{piece:03d}"
    return check_key(key)
