"""Atomic file writes (agents/atomic.py): the folder is made only when asked for."""

from __future__ import annotations

import pytest

from agents.atomic import atomic_write_text


def test_a_missing_folder_is_an_error_and_nothing_is_made(tmp_path):
    target = tmp_path / "new" / "result.json"
    with pytest.raises(FileNotFoundError):
        atomic_write_text(target, "{}")
    assert not (tmp_path / "new").exists()


def test_parents_makes_the_folders_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "a" / "b" / "result.json"
    assert atomic_write_text(target, "{}\n", parents=True) == target
    assert target.read_text() == "{}\n"
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]
    atomic_write_text(target, "[]\n", parents=True)  # the folder exists now: replaced in place
    assert target.read_text() == "[]\n"
