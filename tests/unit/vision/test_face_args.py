"""The face-finding options every front door shares (vision/face_args.py)."""

from __future__ import annotations

import argparse

import pytest

from vision.face_args import add_detect_arg, add_fps_arg
from vision.faces import DETECT_MODES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t")
    add_detect_arg(parser)
    add_fps_arg(parser)
    return parser


def test_defaults_are_auto_detection_and_one_frame_per_second():
    args = _parser().parse_args([])
    assert args.detect == "auto" and args.fps == 1.0


@pytest.mark.parametrize("mode", DETECT_MODES)
def test_every_mode_of_extract_faces_is_accepted(mode):
    assert _parser().parse_args(["--detect", mode, "--fps", "2.5"]).detect == mode


def test_an_unknown_mode_is_a_usage_error_that_lists_the_modes(capsys):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["--detect", "maybe"])
    assert info.value.code == 2
    assert "invalid choice: 'maybe'" in capsys.readouterr().err
