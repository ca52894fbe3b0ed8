"""The command-line pieces every front door shares (agents/command_line.py)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from agents.command_line import BUNDLE_HELP, add_bundle_arg, add_config_options, command_parser, config_values


@dataclass(frozen=True)
class _Plain:
    name: str  # no default: not an option
    size: int = 224
    share: float | None = None
    folder: Path | None = None
    label: str = "test"
    pairs: tuple[int, ...] = ()
    all_faces: bool = False
    detect: bool = True


@pydantic_dataclass(frozen=True)
class _Checked:
    replicas: int = Field(2, ge=1)
    wait_ms: float = 60.0


def test_the_description_is_the_first_line_of_the_docstring_and_defaults_are_shown():
    parser = command_parser("fakeface x", "Does x to a bundle.\n\nLonger text.")
    parser.add_argument("--n", type=int, default=7, help="how many")
    assert parser.prog == "fakeface x" and parser.description == "Does x to a bundle."
    assert "(default: 7)" in parser.format_help()
    quiet = command_parser("x", "Does x.", show_defaults=False)
    quiet.add_argument("--n", type=int, default=7, help="how many")
    assert "(default: 7)" not in quiet.format_help()


def test_a_command_without_a_docstring_is_refused_naming_it():
    with pytest.raises(ValueError, match="'fakeface y'"):
        command_parser("fakeface y", "  \n")


def test_bundle_is_optional_and_says_the_shipped_one_is_used():
    parser = command_parser("t", "T.")
    add_bundle_arg(parser)
    assert parser.parse_args([]).bundle is None
    assert parser.parse_args(["--bundle", "b"]).bundle == "b"
    assert BUNDLE_HELP in " ".join(parser.format_help().split())


def test_bundle_can_be_parsed_as_a_path_with_the_commands_own_help():
    parser = command_parser("t", "T.")
    add_bundle_arg(parser, type=Path, help="the bundle the server runs")
    assert parser.parse_args(["--bundle", "b"]).bundle == Path("b")
    assert "the bundle the server runs" in parser.format_help()


def test_config_options_take_name_type_and_default_from_the_fields():
    parser = argparse.ArgumentParser(prog="t")
    helps = {"size": "crop side", "share": "a share", "folder": "where", "label": "which split"}
    add_config_options(parser, _Plain, helps)
    defaults = parser.parse_args([])
    assert (defaults.size, defaults.share, defaults.folder, defaults.label) == (224, None, None, "test")
    args = parser.parse_args(["--size", "64", "--share", "0.5", "--folder", "d", "--label", "val"])
    assert config_values(args, helps) == {"size": 64, "share": 0.5, "folder": Path("d"), "label": "val"}
    assert _Plain(name="n", **config_values(args, helps)).size == 64


def test_config_options_read_a_pydantic_dataclass_defaults_not_its_field_info():
    parser = argparse.ArgumentParser(prog="t")
    add_config_options(parser, _Checked, {"replicas": "r", "wait_ms": "w"})
    args = parser.parse_args([])
    assert (args.replicas, args.wait_ms) == (2, 60.0)
    assert parser.parse_args(["--wait-ms", "5"]).wait_ms == 5.0


def test_an_option_value_of_the_wrong_type_is_a_usage_error(capsys):
    parser = argparse.ArgumentParser(prog="t")
    add_config_options(parser, _Plain, {"size": "crop side"})
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--size", "big"])
    assert info.value.code == 2 and "invalid int value: 'big'" in capsys.readouterr().err


def test_a_field_without_a_default_or_unknown_is_refused_listing_the_fields():
    for name in ("name", "colour"):
        with pytest.raises(ValueError, match=rf"no field '{name}'.*'size'"):
            add_config_options(argparse.ArgumentParser(), _Plain, {name: "x"})


def test_a_bool_field_false_by_default_is_a_flag_that_sets_it():
    parser = argparse.ArgumentParser(prog="t")
    add_config_options(parser, _Plain, {"all_faces": "every face"})
    assert parser.parse_args([]).all_faces is False
    assert parser.parse_args(["--all-faces"]).all_faces is True
    with pytest.raises(SystemExit):
        parser.parse_args(["--all-faces", "yes"])


def test_a_bool_field_true_by_default_is_refused_as_a_flag():
    with pytest.raises(TypeError, match=r"_Plain.detect is True by default"):
        add_config_options(argparse.ArgumentParser(), _Plain, {"detect": "x"})


def test_a_field_of_no_scalar_type_is_refused():
    with pytest.raises(TypeError, match=r"_Plain.pairs"):
        add_config_options(argparse.ArgumentParser(), _Plain, {"pairs": "x"})
