"""Arguments the training commands share (training/cli_args.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.cli_args import add_vote_cache_args, fit_parser, run_command


def test_a_fit_command_needs_its_bundle_and_manifest(capsys):
    parser = fit_parser("fakeface fit-x", "Fits x into a bundle.\n\nMore text.")
    with pytest.raises(SystemExit):
        parser.parse_args(["--bundle", "b"])
    assert "--manifest" in capsys.readouterr().err
    args = parser.parse_args(["--bundle", "b", "--manifest", "m.csv"])
    assert (args.bundle, args.manifest) == ("b", "m.csv")
    assert parser.description == "Fits x into a bundle."


def test_vote_cache_arguments_default_to_the_shared_cache(tmp_path):
    parser = fit_parser("fakeface fit-x", "Fits x.")
    add_vote_cache_args(parser)
    args = parser.parse_args(["--bundle", "b", "--manifest", "m"])
    assert args.cache_dir is None and not args.no_cache
    args = parser.parse_args(["--bundle", "b", "--manifest", "m", "--cache-dir", str(tmp_path), "--no-cache"])
    assert args.cache_dir == Path(tmp_path) and args.no_cache


def test_a_refused_input_is_one_line_and_exit_code_2_and_a_bug_still_raises(capsys):
    def refuse(args):
        raise ValueError(f"no manifest at {args.manifest}")

    args = fit_parser("fakeface fit-x", "Fits x.").parse_args(["--bundle", "b", "--manifest", "m.csv"])
    assert run_command("fakeface fit-x", refuse, args, (ValueError,)) == 2
    assert capsys.readouterr().err == "fakeface fit-x: no manifest at m.csv\n"
    assert run_command("fakeface fit-x", lambda a: 0, args, (ValueError,)) == 0
    with pytest.raises(ValueError):
        run_command("fakeface fit-x", refuse, args, (OSError,))
