"""What the split writers of this folder share: a split manifest is written only when no group
sits on two sides of the split (checked with `training.dataset.check_splits`, as
`fakeface dataset build` checks its own), and written then renamed.

The writers run by path, so this folder is first on ``sys.path`` and they import it as
``split_files``.
"""

from __future__ import annotations

import os

import pandas as pd

from agents.atomic import atomic_write_text
from training.dataset import check_splits


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
