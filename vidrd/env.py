"""``vidrd env lavis``: the separate environment LAVIS needs (``curation.models.lavis_env``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``vidrd env``."""
    p = sub.add_parser(
        "env",
        help="make the separate environments some backends need (lavis)",
        description="`vidrd env lavis` makes a virtual environment with salesforce-lavis 1.0.2 and its pins "
        "(curation/models/lavis_requirements.txt: transformers 4.26.1, timm 0.4.12, opencv 4.5.5.64, numpy 1.26, "
        "torch 2.14.1) under $VIDRD_CACHE/envs/lavis (default ~/.cache/vidrd), which the project reaches across a "
        "process boundary. Several minutes and ~7 GB (torch again).",
    )
    p.add_argument("name", choices=("lavis",))
    p.add_argument("--path", type=Path, help="where (default: $VIDRD_CACHE/envs/lavis)")
    p.add_argument("--python", help="the interpreter to base it on (default: this one; LAVIS 1.0.2 runs on 3.11)")
    p.add_argument("--force", action="store_true", help="remake it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import subprocess

    from curation.models.lavis_env import LavisEnvError, create

    try:
        exe = create(args.path, args.force, args.python)
    except (LavisEnvError, OSError, subprocess.CalledProcessError) as e:
        print(f"vidrd env lavis: {e}", file=sys.stderr)
        return 2
    print(f"LAVIS environment ready: {exe} (set VIDRD_LAVIS_PYTHON={exe} if you made it elsewhere than the default)")
    return 0
