"""Damaged copies of a bundle, for the tests that check loading refuses each kind of damage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable


def append_byte(path: Path) -> None:
    """Adds a byte to a file, so its content no longer matches the checksum its manifest lists."""
    with open(path, "ab") as f:
        f.write(b"\0")


def edit_manifest(bundle: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    """Rewrites the bundle's manifest after ``edit`` changed it in place (its signature no longer matches)."""
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest, indent=2))


def damaged_copy(bundle: Path, dest: Path, damage: Callable[[Path], object]) -> Path:
    """A copy of ``bundle`` at ``dest`` (which must not exist) with ``damage`` done to it."""
    shutil.copytree(bundle, dest)
    damage(dest)
    return dest
