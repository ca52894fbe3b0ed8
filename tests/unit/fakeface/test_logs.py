"""One JSON object per log line, with the call's fields."""

from __future__ import annotations

import json
import logging

from fakeface.logs import JsonLogFormatter


def test_a_record_becomes_one_json_line_with_its_fields():
    record = logging.LogRecord("fakeface.server", logging.WARNING, __file__, 1, "refused %s", ("call",), None)
    record.fields = {"request_id": "abc", "code": "INVALID_ARGUMENT"}
    line = JsonLogFormatter().format(record)
    assert "\n" not in line
    out = json.loads(line)
    assert out["message"] == "refused call" and out["level"] == "warning" and out["logger"] == "fakeface.server"
    assert out["request_id"] == "abc" and out["code"] == "INVALID_ARGUMENT"
    assert out["time"].endswith("+00:00")


def test_an_exception_is_kept_inside_the_line():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("fakeface", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    out = json.loads(JsonLogFormatter().format(record))
    assert "ValueError: boom" in out["exception"]
