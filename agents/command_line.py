"""The command-line pieces every front door shares, each defined once: a parser described by the
first line of its module docstring, the ``--bundle`` option that falls back to the shipped
bundle, and options declared by the config dataclass they fill (name, type and default taken
from the field).

They live in `agents` (the lowest package) because `fakeface`, `training` and the benchmarks all
build such parsers, and `fakeface` and `training` may not import each other.
"""

from __future__ import annotations

import argparse
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

# What an omitted --bundle means to `agents.bundle.load_bundle` (None: agents/default_bundle).
BUNDLE_HELP = "model bundle directory (None: the shipped bundle)"


def command_parser(prog: str | None, doc: str, *, show_defaults: bool = True) -> argparse.ArgumentParser:
    """A command's argument parser, described in ``--help`` by the first line of ``doc``.

    Args:
        prog: the command as the user types it, e.g. "fakeface serve" (None: argparse's own, the
            script's file name).
        doc: the command module's docstring.
        show_defaults: append each option's default to its help text.

    Raises:
        ValueError: ``doc`` is empty (a command must say what it does).
    """
    if not doc or not doc.strip():
        raise ValueError(f"A command needs a docstring to describe it; received {doc!r} for {prog!r}.")
    formatter = argparse.ArgumentDefaultsHelpFormatter if show_defaults else argparse.HelpFormatter
    return argparse.ArgumentParser(prog=prog, description=doc.strip().splitlines()[0], formatter_class=formatter)


def add_bundle_arg(parser: argparse.ArgumentParser, *, help: str = BUNDLE_HELP,
                   type: Callable[[str], object] = str) -> None:
    """``--bundle DIR``, optional: left out, the command loads the shipped bundle.

    Args:
        parser: the command's parser (or sub-command parser).
        help: what the bundle is used for, when the command says more than `BUNDLE_HELP`.
        type: how the path is parsed (``pathlib.Path`` where the command keeps a `Path`).
    """
    parser.add_argument("--bundle", type=type, default=None, help=help)


def add_config_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, config: type,
                       helps: Mapping[str, str]) -> None:
    """One option per field of a config dataclass named in ``helps``: ``--min-face-size`` for the
    field ``min_face_size``, parsed as the field's type and defaulting to the field's default, so
    the command line never restates what the config already says. A bool field that is False by
    default becomes a flag that sets it.

    Args:
        parser: the command's parser, or an argument group of it.
        config: a dataclass (stdlib or pydantic) whose fields have scalar types (int, float, str,
            Path, or one of them or None; or bool, False by default) and defaults.
        helps: field name -> the option's help text, in the order the options are listed.

    Raises:
        ValueError: a name in ``helps`` that is not a field of ``config`` with a default.
        TypeError: a field whose type is not one scalar type (or it or None), or a bool field that
            is True by default (a flag could not turn it off).
    """
    hints = typing.get_type_hints(config)
    for name, text in helps.items():
        if name not in hints or not hasattr(config, name):
            raise ValueError(f"{config.__name__} has no field {name!r} with a default; "
                             f"fields with defaults: {sorted(n for n in hints if hasattr(config, n))}.")
        flag, default = "--" + name.replace("_", "-"), getattr(config, name)
        if hints[name] is bool:
            if default is not False:
                raise TypeError(f"{config.__name__}.{name} is True by default; a flag can only set it, so the "
                                "command needs an option of its own (e.g. --no-...).")
            parser.add_argument(flag, action="store_true", help=text)
        else:
            parser.add_argument(flag, type=_scalar(config, name, hints[name]), default=default, help=text)


def config_values(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The parsed values of the options `add_config_options` made for ``names``, by field name,
    ready to pass to the config."""
    return {name: getattr(args, name) for name in names}


def _scalar(config: type, name: str, hint: Any) -> Callable[[str], Any]:
    """The type an option's text is parsed as: the field's, with ``| None`` dropped."""
    options = [t for t in typing.get_args(hint) if t is not type(None)] if typing.get_args(hint) else [hint]
    if len(options) != 1 or options[0] not in (int, float, str, Path):
        raise TypeError(f"{config.__name__}.{name} is {hint!r}; a command-line option needs int, float, str or "
                        "Path (or one of them | None).")
    return options[0]
