"""JSON records: what to_dict writes, from_dict reads back, and old records read with defaults."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from agents.records import JsonRecord


@dataclass
class _Plain(JsonRecord):
    name: str
    rows: list[int] = field(default_factory=list)
    added_later: int = 3


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class _Checked(JsonRecord):
    size: int = Field(8, ge=8)
    mode: str = "a"


def test_a_record_survives_json():
    record = _Plain(name="x", rows=[1, 2], added_later=5)
    assert _Plain.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_an_old_record_reads_with_defaults_and_other_keys_pass():
    assert _Plain.from_dict({"name": "x", "reader_only": True}) == _Plain(name="x", rows=[], added_later=3)
    assert _Checked.from_dict({"size": 16, "written_by_newer_code": 1}) == _Checked(size=16)


def test_the_class_checks_run_on_what_is_read():
    with pytest.raises(ValueError, match=r"size\n.*greater than or equal to 8.*input_value=4"):
        _Checked.from_dict({"size": 4})
    with pytest.raises(TypeError, match="name"):  # a required field absent from the record
        _Plain.from_dict({"rows": [1]})
