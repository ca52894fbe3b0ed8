"""Building a bundle beside its destination and swapping it in (agents/bundle_staging.py)."""

from __future__ import annotations

import json
import shutil

import pytest

from agents import signing
from agents.bundle import load_bundle
from agents.bundle_files import MANIFEST
from agents.bundle_staging import staged_bundle


def test_a_failed_edit_leaves_the_bundle_and_no_temporary_folder(tiny_bundle, tmp_path):
    target = tmp_path / "b"
    shutil.copytree(tiny_bundle, target)
    before = (target / MANIFEST).read_bytes()
    manifest = json.loads(before)
    with pytest.raises(RuntimeError, match="half-way"):
        with staged_bundle(target, manifest, copy_of=target, stamp_updated=True) as tmp:
            (tmp / "notes.txt").write_text("never sealed")
            raise RuntimeError("half-way")
    assert (target / MANIFEST).read_bytes() == before
    assert not (target / "notes.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_a_finished_edit_is_sealed_stamped_and_swapped_in(tiny_bundle, tmp_path):
    target = tmp_path / "b"
    shutil.copytree(tiny_bundle, target)
    manifest = json.loads((target / MANIFEST).read_text())
    assert "updated" not in manifest
    with staged_bundle(target, manifest, copy_of=target, stamp_updated=True) as tmp:
        (tmp / "notes.txt").write_text("sealed")
        manifest["description"]["note"] = "added in the block"
    bundle = load_bundle(target, trust=signing.WRITER)  # the inventory lists the new file
    assert "notes.txt" in bundle.manifest["files"]
    assert bundle.manifest["description"]["note"] == "added in the block"
    assert bundle.manifest["updated"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # the old copy is gone too
