"""One-line errors for commands: a pydantic ValidationError names the config, field and value."""

from __future__ import annotations

import pytest
from pydantic import ConfigDict, Field, ValidationError, model_validator
from pydantic.dataclasses import dataclass

from agents.config_errors import one_line


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class _Limits:
    low: int = Field(1, ge=1)
    high: int = 10

    @model_validator(mode="after")
    def _ordered(self) -> "_Limits":
        if self.low > self.high:
            raise ValueError(f"low must not exceed high, received low={self.low}, high={self.high}.")
        return self


def _error(**fields) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        _Limits(**fields)
    return caught.value


def test_a_field_error_names_the_config_field_and_value_in_one_line():
    line = one_line(_error(low=0))
    assert line == "_Limits.low: Input should be greater than or equal to 1, received 0."


def test_a_cross_field_rule_keeps_its_own_message():
    assert one_line(_error(low=5, high=2)) == "_Limits: low must not exceed high, received low=5, high=2."


def test_further_problems_are_counted_not_listed():
    line = one_line(_error(low=0, high="many"))
    assert "\n" not in line and line.startswith("_Limits.low:") and line.endswith("(1 more problem(s) after this one)")


def test_an_unknown_field_is_named_with_its_value():
    assert one_line(_error(wide="x")).startswith("_Limits.wide: Unexpected keyword argument, received 'x'.")


def test_other_errors_are_their_message():
    assert one_line(ValueError("bad manifest")) == "bad manifest"
