"""Every model's numeric hyper-parameters carry a range, and a value outside it is a one-line
:class:`CdrecError` naming ``model_params.<key>``, whether the params come from a config or are built
directly."""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest

from cdrec.config import ModelParams, Range
from cdrec.errors import CdrecError
from cdrec.models import registry

NUMERIC = (int, float, int | None, float | None, list[int], list[float])


def _numeric_fields(params: type) -> list[dataclasses.Field]:
    hints = typing.get_type_hints(params)
    return [f for f in dataclasses.fields(params) if hints[f.name] in NUMERIC]


def _outside(rng: Range, is_int: bool) -> float:
    """A value just outside ``rng``: below its lower end where it has one, else above its upper end."""
    step = 1 if is_int else 1e-3
    if rng.lo is not None:
        return rng.lo if rng.lo_open else rng.lo - step
    return rng.hi if rng.hi_open else rng.hi + step


CASES = [
    pytest.param(name, f, id=f"{name}.{f.name}")
    for name, entry in sorted(registry.entries().items())
    for f in _numeric_fields(entry.params)
]


@pytest.mark.parametrize("name", sorted(registry.entries()))
def test_every_numeric_param_is_bounded(name: str) -> None:
    params = registry.get(name).params
    assert issubclass(params, ModelParams), f"{params.__name__} does not check its ranges on construction"
    unbounded = [f.name for f in _numeric_fields(params) if "range" not in f.metadata]
    assert unbounded == [], f"{name}: numeric params without a range: {unbounded}"


@pytest.mark.parametrize(("name", "fld"), CASES)
def test_value_outside_the_range_names_the_key(name: str, fld: dataclasses.Field) -> None:
    params = registry.get(name).params
    is_list = typing.get_origin(typing.get_type_hints(params)[fld.name]) is list
    is_int = "int" in str(typing.get_type_hints(params)[fld.name])
    bad = _outside(fld.metadata["range"], is_int)
    if is_int:
        bad = int(bad)
    value = [bad] if is_list else bad
    with pytest.raises(CdrecError, match=rf"^model_params\.{fld.name} \({re.escape(name)}\): expected a number "):
        registry.build_params(name, {fld.name: value})
    with pytest.raises(CdrecError, match=rf"^model_params\.{fld.name}: expected a number "):
        params(**{fld.name: value})


@pytest.mark.parametrize("name", sorted(registry.entries()))
def test_defaults_are_inside_their_ranges(name: str) -> None:
    registry.build_params(name, {})
    registry.get(name).params()
