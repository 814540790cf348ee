"""The ``vidrd shards`` parser. It imports nothing heavy, so ``--help`` answers at once; the commands themselves
are in ``curation.inspect.commands``."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``vidrd shards`` and its subcommands."""
    p = sub.add_parser(
        "shards",
        help="inspect WebDataset shards (ls, stats, show, verify, gallery)",
        description="Inspect what the curation stages wrote. PATH is a shard folder, one "
        ".tar, or a glob; local paths and fsspec URLs (s3://, gs://, ...) both work.",
    )
    s = p.add_subparsers(dest="shards_cmd", required=True, metavar="{ls,stats,show,verify,gallery}")

    q = s.add_parser("ls", help="shards with sample counts, sizes and status")
    q.add_argument("path")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func="cmd_ls")

    q = s.add_parser("stats", help="counts by source; duration, frame and caption-length distributions; rejects")
    q.add_argument("path")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.add_argument("--scan", action="store_true", help="read the tars even when _index.parquet exists")
    q.set_defaults(func="cmd_stats")

    q = s.add_parser(
        "show",
        help="one sample's metadata and caption, and its frames as a contact sheet PNG "
        "(long-videos segments: with the video's keep/drop timeline under it)",
    )
    q.add_argument("path")
    q.add_argument("key")
    q.add_argument("--out", help="PNG path for the contact sheet (default: KEY.png)")
    q.add_argument("--frames", type=int, default=8, help="frames on the sheet (default 8)")
    q.set_defaults(func="cmd_show")

    q = s.add_parser("verify", help="every sample decodes, counts agree, keys unique, tars complete; exit 1 if not")
    q.add_argument("path")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.add_argument("--no-decode", action="store_true", help="skip decoding the videos (structure checks only)")
    q.set_defaults(func="cmd_verify")

    q = s.add_parser(
        "gallery",
        help="static HTML page: a thumbnail strip, the caption and the signals of each sample",
        description="Write OUT/index.html (and thumbs/). With --where, the page shows what the filter keeps and, "
        "below, what it drops (as the trainer's `where` would: same syntax, index columns plus is_dup); with "
        "--sort, in that column's order (nulls last). Both read the set's _index.parquet.",
    )
    q.add_argument("path")
    q.add_argument("--out", required=True, help="folder for index.html and thumbs/")
    q.add_argument("--limit", type=int, default=200, help="at most this many samples per section (default 200)")
    q.add_argument("--frames", type=int, default=6, help="frames per strip (default 6)")
    q.add_argument("--where", help='a filter over index columns, e.g. "motion >= 0.3 and not is_dup"')
    q.add_argument("--sort", help="an index column to order by (e.g. motion, duration, cuts)")
    q.add_argument("--desc", action="store_true", help="largest first")
    q.set_defaults(func="cmd_gallery")


def run(args: argparse.Namespace) -> int:
    """Run the chosen subcommand (clear messages and exit 2 for paths and index files that cannot be read)."""
    from curation.inspect import commands

    if isinstance(args.func, str):
        args.func = getattr(commands, args.func)
    return commands.run(args)
