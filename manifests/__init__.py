"""Data contracts of the pipeline: Arrow schemas, Parquet readers/writers and source-manifest builders.

This package sits at the start of the data flow and imports nothing from later stages.
"""

from manifests.schema import INDEX_SCHEMA, REJECTS_SCHEMA, SOURCE_SCHEMA, RejectReason

__all__ = ["INDEX_SCHEMA", "REJECTS_SCHEMA", "SOURCE_SCHEMA", "RejectReason"]
