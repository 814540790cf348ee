"""Arrow schemas for the three tables every stage reads or writes.

* source manifest: one row per raw item a dataset ships (what exists);
* sample index (``_index.parquet``): one row per sample written to a shard (columns whose field metadata says
  ``optional`` came later: a file without them reads with nulls there);
* rejects (``_rejects.parquet``): one row per input that produced nothing, with a reason code.

For every stage ``inputs == inputs that produced samples + rejects``; the schemas carry the ids
needed to check that equation (``source_id`` in the index, ``input_id`` in the rejects).
"""

from __future__ import annotations

from enum import Enum

import pyarrow as pa

SOURCE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # "video" | "image"
        pa.field("label", pa.string()),
        pa.field("captions", pa.list_(pa.string())),
        pa.field("duration", pa.float64()),
        pa.field("fps", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("split", pa.string()),
        # Trim window inside the file, in seconds, when the annotation gives one (Kinetics, VATEX).
        pa.field("start", pa.float64()),
        pa.field("end", pa.float64()),
    ]
)

INDEX_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("shard", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("frames", pa.int32()),
        pa.field("fps", pa.float64()),
        pa.field("duration", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("caption_length", pa.int32()),
        pa.field("num_captions", pa.int32()),
        pa.field("bytes", pa.int64()),
        # Signals added after the first release (cuts, motion): an index written before them reads with nulls.
        pa.field("cuts", pa.int32(), metadata={"optional": "1"}),  # shot cuts inside the sample
        pa.field("motion", pa.float64(), metadata={"optional": "1"}),  # % of the frame width per frame
    ]
)

REJECTS_SCHEMA = pa.schema(
    [
        pa.field("input_id", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("uri", pa.string()),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("message", pa.string()),
    ]
)


class RejectReason(str, Enum):
    """Reason codes shared by every stage; ``message`` carries the specifics."""

    MISSING_FILE = "missing_file"
    EMPTY_FILE = "empty_file"
    UNDECODABLE = "undecodable"
    NOT_A_VIDEO = "not_a_video"
    NOT_AN_IMAGE = "not_an_image"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    TOO_SMALL = "too_small"
    NO_CAPTION = "no_caption"
    NO_LABEL = "no_label"
    BAD_ANNOTATION = "bad_annotation"
    DUPLICATE = "duplicate"
    HAS_CUT = "has_cut"
    STATIC = "static"
    SIGNALS_FAILED = "signals_failed"  # cut detection or optical flow raised on this video
    MODEL_FAILED = "model_failed"
    NO_SEGMENT = "no_segment"
    ENCODE_FAILED = "encode_failed"
    INTERNAL_ERROR = "internal_error"
    WORKER_CRASHED = "worker_crashed"


# File names of the shard contract (DESIGN.md "Shard contract"): beside the tars of an output folder.
INDEX_FILE = "_index.parquet"
REJECTS_FILE = "_rejects.parquet"
PARTS_DIR = "_parts"
