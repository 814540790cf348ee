"""The ``vidrd`` command: one entry point, a subcommand per part of the system."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from vidrd import __version__

# The packages whose module loggers the command shows (library code logs, only command modules print).
LOGGED_PACKAGES = ("curation", "devices", "inference", "manifests", "media", "shards", "training", "vidrd")


class StderrHandler(logging.StreamHandler):
    """Writes each record to ``sys.stderr`` as it is when the record comes, not as it was when the handler was made
    (a later redirect, a test's capture, a closed stream replaced)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """Show the project's log records (``level`` and up) on stderr as plain lines; idempotent."""
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in LOGGED_PACKAGES:
        log = logging.getLogger(name)
        if not any(isinstance(h, StderrHandler) for h in log.handlers):
            log.addHandler(handler)
        log.setLevel(level)


def _train(args: argparse.Namespace) -> int:
    from training.cli import main as train_main

    return train_main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (subcommands register themselves)."""
    from curation import cli as curate_cli
    from curation.inspect import cli as shards_cli
    from inference import cli as generate_cli
    from inference.eval import cli as eval_cli
    from manifests import cli as manifest_cli
    from training import latents_cli
    from vidrd import cluster, convert, demo, env

    parser = argparse.ArgumentParser(
        prog="vidrd",
        description="Reuse and Diffuse (VidRD): curate video-text data on Ray into WebDataset shards, train the "
        "video LDM, generate long videos. Run `vidrd demo --out DIR` for the whole system on synthetic data.",
    )
    parser.add_argument("--version", action="version", version=f"vidrd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.add_parser(sub)
    manifest_cli.add_parser(sub)
    curate_cli.add_parser(sub)
    shards_cli.add_parser(sub)
    generate_cli.add_parser(sub)
    eval_cli.add_parser(sub)
    convert.add_parser(sub)
    env.add_parser(sub)
    cluster.add_parser(sub)
    latents_cli.add_parser(sub)
    train = sub.add_parser(
        "train",
        add_help=False,  # `vidrd train --help` is LightningCLI's own
        help="train VidRD with LightningCLI: fit | validate | test --config C.yaml (see `vidrd train --help`)",
    )
    train.add_argument("rest", nargs=argparse.REMAINDER)
    train.set_defaults(func=_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vidrd`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    configure_logging()
    if argv[:1] == ["train"]:  # LightningCLI parses everything after `train`, `--help` included
        return _train(argparse.Namespace(rest=argv[1:]))
    parser = build_parser()
    if any(a == "--config" or a.startswith("--config=") for a in argv):
        from inference.config_args import ConfigFileError, expand_config

        try:
            argv = expand_config(parser, argv)
        except ConfigFileError as e:
            print(f"vidrd: {e}", file=sys.stderr)
            return 2
    args = parser.parse_args(argv)
    if getattr(args, "print_config", False):
        from inference.config_args import print_config

        print_config(args.config_parser, args)
        return 0
    if args.command == "shards":
        from curation.inspect.cli import run as shards_run

        return shards_run(args)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
