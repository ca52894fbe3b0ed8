"""Dataclasses kept as JSON objects: one way to write such a record and to read it back."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Mapping, Self


class JsonRecord:
    """Mixin for a dataclass (stdlib or pydantic) stored as a JSON object.

    ``to_dict`` gives every field; ``from_dict`` takes the fields the mapping holds and passes
    over other keys, so a record written before a field existed reads with that field's default
    (a bundle's preprocessing before colour spaces), and keys a record carries for other readers
    do no harm. The class's own checks run on the values read, as on any construction.
    """

    def to_dict(self) -> dict[str, Any]:
        """Every field by name (nested dataclasses as dicts, as ``dataclasses.asdict`` gives them)."""
        return asdict(self)  # type: ignore[call-overload]  # the subclass is a dataclass

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The record from a mapping: its known fields that are present, the defaults for the rest."""
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})  # type: ignore[attr-defined]
