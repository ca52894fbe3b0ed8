"""A file's checksum is read once per process while the file stays as it was, and again after any change."""

from __future__ import annotations

import hashlib

import pytest

import agents.bundle_files as bundle_files
from agents.bundle_files import sha256_file


def _unreadable(*args, **kwargs):
    raise AssertionError("the file was read again")


def test_a_file_unchanged_since_its_checksum_was_read_is_not_read_again(tmp_path, monkeypatch):
    monkeypatch.setattr(bundle_files, "RACY_S", -1.0)  # as if every file had been written long ago
    path = tmp_path / "model.onnx"
    path.write_bytes(b"weights" * 1000)
    digest = sha256_file(path)
    assert digest == hashlib.sha256(b"weights" * 1000).hexdigest()
    with monkeypatch.context() as patch:
        patch.setattr(bundle_files, "open", _unreadable, raising=False)
        assert sha256_file(path) == digest
    path.write_bytes(b"weights" * 999)  # another size: another file as far as the cache knows
    assert sha256_file(path) == hashlib.sha256(b"weights" * 999).hexdigest()


def test_a_file_written_just_now_is_read_every_time(tmp_path, monkeypatch):
    # A rewrite of the same size within a coarse clock tick may keep the file's times: a file
    # written less than RACY_S ago is never taken from the cache, so the damage is seen.
    path = tmp_path / "model.onnx"
    path.write_bytes(b"a" * 4096)
    first = sha256_file(path)
    path.write_bytes(b"b" * 4096)
    assert sha256_file(path) == hashlib.sha256(b"b" * 4096).hexdigest() != first
    with monkeypatch.context() as patch:
        patch.setattr(bundle_files, "open", _unreadable, raising=False)
        with pytest.raises(AssertionError, match="read again"):
            sha256_file(path)
