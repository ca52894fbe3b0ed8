"""The feedback log refuses, at start-up and with its path named, a place it could not write to."""

from __future__ import annotations

import re

import pytest

from blackboard.feedback_log import FeedbackLog


def test_a_folder_or_a_path_under_a_file_is_refused_naming_it(tmp_path):
    with pytest.raises(ValueError, match=rf"feedback log {re.escape(str(tmp_path))} cannot be used \(Is a directory\)"):
        FeedbackLog(tmp_path)
    (tmp_path / "plain").write_text("x")
    with pytest.raises(ValueError, match="plain/feedback.jsonl cannot be used"):
        FeedbackLog(tmp_path / "plain" / "feedback.jsonl")


def test_a_new_log_is_created_by_its_first_record_and_reloaded_with_its_ids(tmp_path):
    log = FeedbackLog(tmp_path / "new" / "feedback.jsonl")
    assert log.records == 0 and not log.path.exists()  # opening it wrote nothing
    log.path.write_text('{"request_id": "a"}\n{"request_id": "b"}\n{"request_id": "a"}\n{"torn')
    again = FeedbackLog(log.path)
    assert again.records == 3 and again.cases == 2
    assert log.path.read_text().endswith('{"torn\n')  # the torn record is closed off, not rewritten
