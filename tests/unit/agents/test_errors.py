"""Failures raised as the caller's own error, naming the file or thing and keeping the reason."""

from __future__ import annotations

import hashlib

import pytest

from agents.errors import lookup, parse_json, raised_as, read_bytes, read_verified


class CallerError(ValueError):
    """Stands for a module's own error type (BundleError, ImageError, ...)."""


def test_raised_as_prefixes_the_message_and_chains_the_cause():
    with pytest.raises(CallerError, match=r"^rows\.csv: bad label 'x'$") as info:
        with raised_as(CallerError, "rows.csv"):
            raise ValueError("bad label 'x'")
    assert isinstance(info.value.__cause__, ValueError)


def test_raised_as_lets_other_exceptions_through():
    with pytest.raises(KeyError):
        with raised_as(CallerError, "where"):
            raise KeyError("not caught")
    with pytest.raises(CallerError, match="where: 'caught'"):
        with raised_as(CallerError, "where", catch=(KeyError,)):
            raise KeyError("caught")


def test_read_bytes_names_the_file_and_the_reason(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"\x00\x01")
    assert read_bytes(tmp_path / "a.bin", error=CallerError) == b"\x00\x01"
    with pytest.raises(CallerError, match=r"missing\.pem: cannot read signing key \(No such file or directory\)\.$"):
        read_bytes(tmp_path / "missing.pem", error=CallerError, what="signing key")
    with pytest.raises(CallerError, match="cannot read file"):
        read_bytes(tmp_path, error=CallerError)  # a folder is not a file


def test_read_verified_refuses_a_modified_file(tmp_path):
    path = tmp_path / "v1.json"
    path.write_bytes(b"{}")
    recorded = hashlib.sha256(b"{}").hexdigest()
    assert read_verified(path, recorded, error=CallerError, what="table") == b"{}"
    path.write_bytes(b"{ }")
    with pytest.raises(CallerError, match=r"Checksum mismatch for .*v1\.json: the table was modified"):
        read_verified(path, recorded, error=CallerError, what="table")


@pytest.mark.parametrize("data", [b"{", b"\xff\xfe", "[" * 100_000])
def test_parse_json_says_what_was_not_json(data):
    with pytest.raises(CallerError, match="^Controller table is not valid JSON: "):
        parse_json(data, what="Controller table", error=CallerError)


def test_parse_json_returns_the_value():
    assert parse_json(b'{"a": [1, 2]}', what="x") == {"a": [1, 2]}


def test_lookup_lists_the_known_names():
    table = {"blur": 1, "jpeg": 2}
    assert lookup(table, "jpeg", what="degradation") == 2
    with pytest.raises(ValueError, match=r"Unknown degradation 'png'; known: blur, jpeg\.") as info:
        lookup(table, "png", what="degradation")
    assert info.value.__cause__ is None and info.value.__suppress_context__
