"""Setting values: the one typing rule of Python keywords, presets and `--set` (bool, int, float, str).

A sampler setting is typed by its declared type (`spgd.samplers.typed_setting`), an operator parameter by the
type of its default (`spgd.operators.typed_param`); both come here, so a value means the same everywhere.

>>> typed("steps", "int", 20.0), typed("lr", "float", 2)
(20, 2.0)
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from .errors import SpgdError

KINDS = ("bool", "int", "float", "str")


def kind_of(default: Any) -> str:
    """The kind a value must have to replace `default` ("any" when its type says nothing, e.g. None)."""
    for kind, cls in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if isinstance(default, cls):
            return kind
    return "any"


def typed(what: str, kind: str, value: Any) -> Any:
    """`value` as `kind` (one of KINDS; anything else passes as it is): an integral float is an int, an int a
    float; a bool is never a number. An SpgdError naming `what` otherwise."""
    got = f"got {value!r} ({type(value).__name__})"
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise SpgdError(f"{what} must be true or false, {got}")
    if kind == "int":
        if number and (isinstance(value, numbers.Integral) or float(value).is_integer()):
            return int(value)
        raise SpgdError(f"{what} must be an integer, {got}")
    if kind == "float":
        if number and math.isfinite(float(value)):
            return float(value)
        raise SpgdError(f"{what} must be a finite number, {got}")
    if kind == "str" and not isinstance(value, str):
        raise SpgdError(f"{what} must be a string, {got}")
    return value
