"""``--config FILE`` and ``--print-config`` for the argparse commands (``vidrd generate``, ``vidrd eval ucf101``), as
``vidrd train`` has them through LightningCLI: a run is saved as one YAML file and replayed from it.

The file's keys are the command's options (``prompt_frames`` or ``prompt-frames``). It is read where ``--config``
stands on the command line and turned into the options it holds, so argparse checks them as if they had been typed
(types, choices, required options) and an option after ``--config`` overrides the file's value, one before it is
overridden by the file: the same order rule as LightningCLI's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CONFIG = "--config"
PRINT_CONFIG = "--print-config"
NOT_SAVED = {"help", "func", "config", "print_config", "config_parser"}


class ConfigFileError(ValueError):
    """A ``--config`` file that cannot be read, is not a mapping, or names an option the command does not have."""


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--config FILE`` and ``--print-config`` on ``parser`` (a command's own subparser)."""
    parser.add_argument(
        CONFIG,
        metavar="FILE",
        help="YAML file of this command's options (keys as the option names, e.g. prompt_frames: 8), read where it "
        "stands: options after it override the file's values (`--print-config` writes such a file)",
    )
    parser.add_argument(
        PRINT_CONFIG,
        action="store_true",
        help="print the options of this run as a --config YAML file and exit without running it",
    )
    parser.set_defaults(config_parser=parser)


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Option actions by ``dest`` (those a config file may set)."""
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest not in NOT_SAVED}


def _tokens(action: argparse.Action, value: Any, key: str, file: str) -> list[str]:
    flag = max(action.option_strings, key=len)
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ConfigFileError(f"{file}: {key} must be true or false, got {value!r}")
        return [flag] if value == isinstance(action, argparse._StoreTrueAction) else []
    if value is None:
        return []
    if isinstance(action, argparse._AppendAction):
        values = value if isinstance(value, list) else [value]
        return [t for v in values for t in (flag, str(v))]
    if isinstance(value, (list, dict)):
        raise ConfigFileError(f"{file}: {key} takes one value, got {value!r}")
    return [flag, str(value)]


def read_config(parser: argparse.ArgumentParser, path: str) -> list[str]:
    """The options ``path`` holds, as command-line tokens of ``parser``."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigFileError(f"{path}: cannot read ({e.strerror or e})") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigFileError(f"{path}: not YAML ({getattr(e, 'problem', None) or type(e).__name__}{where})") from e
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: expected a mapping of option names to values, got {type(data).__name__}")
    options = _options(parser)
    tokens: list[str] = []
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest not in options:
            raise ConfigFileError(f"{path}: {key!r} is not an option of this command (options: {', '.join(options)})")
        tokens += _tokens(options[dest], value, str(key), path)
    return tokens


def _subcommand(parser: argparse.ArgumentParser, token: str) -> argparse.ArgumentParser | None:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction) and token in a.choices:
            return a.choices[token]
    return None


def expand_config(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``argv`` with every ``--config FILE`` (or ``--config=FILE``) replaced by the options the file holds, read
    against the (sub)command it follows (``vidrd generate --config run.yaml``: ``generate``'s options). Commands
    with a ``--config`` of their own meaning (not registered by :func:`add_config_arguments`) keep it as it is."""
    out: list[str] = []
    rest = list(argv)
    command = parser
    while rest:
        token = rest.pop(0)
        if (token == CONFIG or token.startswith(CONFIG + "=")) and command.get_default("config_parser") is command:
            if token == CONFIG and not rest:
                raise ConfigFileError(f"{CONFIG} needs a file")
            out += read_config(command, rest.pop(0) if token == CONFIG else token[len(CONFIG) + 1 :])
            continue
        sub = None if token.startswith("-") else _subcommand(command, token)
        command = sub or command
        out.append(token)
    return out


def config_of(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options of ``args`` that ``read_config`` reads back: every option of ``parser`` (defaults
    included, so a replay does not depend on the defaults of a later version)."""
    return {dest: getattr(args, dest) for dest in _options(parser) if hasattr(args, dest)}


def print_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Write :func:`config_of` as YAML to stdout."""
    import yaml

    sys.stdout.write(yaml.safe_dump(config_of(parser, args), sort_keys=False))
