"""Arguments the training commands share, each defined once with one help text: the bundle and
manifest of the `fakeface fit-*` commands, and the vote cache of the commands that collect the
agents' votes (`training.votes`); and how a command reports a refused input (one line, exit 2)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from agents.command_line import command_parser
from agents.config_errors import one_line


def fit_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """A fit command's parser with ``--bundle`` and ``--manifest``, both required.

    Args:
        prog: the command, e.g. "fakeface fit-ood".
        doc: its module docstring; the first line describes it in ``--help``.
    """
    parser = command_parser(prog, doc, show_defaults=False)
    parser.add_argument("--bundle", required=True, help="model bundle directory (updated in place, atomically)")
    parser.add_argument("--manifest", required=True, help="dataset manifest CSV (path,label,group,split,...)")
    return parser


def add_vote_cache_args(parser: argparse.ArgumentParser) -> None:
    """``--cache-dir`` and ``--no-cache``: where `training.vote_cache` keeps the votes, or not at all."""
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="vote cache folder (default $FAKEFACE_CACHE/votes or ~/.cache/fakeface/votes)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the vote cache")


def run_command(prog: str, run: Callable[[argparse.Namespace], int], args: argparse.Namespace,
                refused: tuple[type[BaseException], ...]) -> int:
    """``run(args)``'s exit code; an error of a ``refused`` type (a bad bundle, manifest or
    argument) is printed as one line ``prog: message`` on stderr instead, with exit code 2.

    Args:
        prog: the command, e.g. "fakeface fit-controller".
        run: the command's body.
        args: its parsed arguments.
        refused: the error types that mean bad input rather than a bug.
    """
    try:
        return run(args)
    except refused as err:
        print(f"{prog}: {one_line(err)}", file=sys.stderr)
        return 2
