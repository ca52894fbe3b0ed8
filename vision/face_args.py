"""How the front doors (`fakeface classify`, `fakeface batch`, `fakeface evaluate`) ask for the
way faces are found: each option defined once, with one help text."""

from __future__ import annotations

import argparse

from vision.faces import DETECT_MODES


def add_detect_arg(parser: argparse.ArgumentParser) -> None:
    """``--detect``: the mode of `vision.faces.extract_faces`, "auto" by default."""
    parser.add_argument("--detect", choices=DETECT_MODES, default="auto",
                        help="face detection: auto (an image shaped like a face crop is used whole, others "
                             "are detected and aligned), on (always detect) or off (inputs are face crops)")


def add_fps_arg(parser: argparse.ArgumentParser) -> None:
    """``--fps``: frames sampled per second of video (`vision.media.sample_frames`), 1 by default."""
    parser.add_argument("--fps", type=float, default=1.0, help="video frames sampled per second")
