"""The arguments the `fakeface fit-*` commands share: the bundle they fit a component into (in
place) and the manifest whose splits they fit it on."""

from __future__ import annotations

import argparse


def fit_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """A fit command's parser with ``--bundle`` and ``--manifest``, both required.

    Args:
        prog: the command, e.g. "fakeface fit-ood".
        doc: its module docstring; the first line describes it in ``--help``.
    """
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="model bundle directory (updated in place, atomically)")
    parser.add_argument("--manifest", required=True, help="dataset manifest CSV (path,label,group,split,...)")
    return parser
