"""``vidrd manifest SOURCE ROOT --out M.parquet``."""

from __future__ import annotations

import argparse
import sys

# The dataset layouts from the sources table, without importing the builders: `--help` answers at once.
from manifests.sources import SOURCES

SOURCE_NAMES = tuple(sorted(SOURCES))


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``vidrd manifest``."""
    p = sub.add_parser(
        "manifest",
        help="build a source manifest (Parquet) from a dataset's own layout",
        description="Read a dataset as it is published (annotation files + media folders) and write one row "
        "per item to OUT, plus OUT's .rejects.parquet with one row per annotation entry that has no usable "
        "file (reason and file:line). Layouts are described in each builder's docstring and in the README.",
    )
    p.add_argument("source", choices=SOURCE_NAMES, help="dataset layout to read")
    p.add_argument("root", help="dataset root folder (local path or fsspec URL)")
    p.add_argument("--out", required=True, help="output manifest path, e.g. manifests/webvid.parquet")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from manifests.build import build_manifest
    from manifests.builders import ManifestBuildError

    try:
        summary = build_manifest(args.source, args.root, args.out)
    except (ManifestBuildError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary.line())
    return 0
