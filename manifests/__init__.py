"""Data contracts of the pipeline: Arrow schemas, Parquet readers/writers and source-manifest builders
(``manifests.schema``, ``manifests.io``, ``manifests.builders``).

This package sits at the start of the data flow and imports nothing from later stages. Its ``__init__`` imports
nothing either, so ``vidrd manifest --help`` does not load Arrow.
"""
