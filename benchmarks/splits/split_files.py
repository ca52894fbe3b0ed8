"""What the split writers of this folder share: where the data sets are, a command line that
extends one split of this folder into another, and how a split manifest is written: only when no
group sits on two sides of the split (checked with `training.dataset.check_splits`, as
`fakeface dataset build` checks its own), then renamed into place.

The writers run by path, so this folder is first on ``sys.path`` and they import it as
``split_files``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

from agents.atomic import atomic_write_text
from agents.command_line import command_parser
from training.dataset import check_splits

HERE = Path(__file__).resolve().parent
# The shared data folder beside the checkout (kept unresolved: ../shared is a link there).
SHARED_DATA = HERE / "../../../shared/data"


def split_parser(doc: str, *, base: str, base_help: str, out: str) -> argparse.ArgumentParser:
    """The parser of a writer that extends the split ``base`` of this folder into ``out`` (both
    named by ``--base`` and ``--out``, defaults shown).

    Args:
        doc: the writer's docstring; its first line describes it in ``--help``.
        base: the file name of the split it extends, in this folder.
        base_help: what that split is, for ``--help``.
        out: the file name it writes, in this folder.
    """
    parser = command_parser(None, doc)
    parser.add_argument("--base", default=str(HERE / base), help=base_help)
    parser.add_argument("--out", default=str(HERE / out), help="the split manifest written")
    return parser


def write_split(out: str | os.PathLike[str], rows: pd.DataFrame) -> None:
    """Writes ``rows`` (path,label,group,split...) to ``out`` as CSV, atomically.

    Raises:
        SystemExit: a group has rows in two splits (naming ``out`` and the groups); nothing is written.
    """
    try:
        check_splits(rows)
    except ValueError as err:
        raise SystemExit(f"{out}: {err}") from None
    atomic_write_text(out, rows.to_csv(index=False))
