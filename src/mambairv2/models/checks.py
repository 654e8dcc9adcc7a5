"""Checks of network hyper-parameters, shared by the families' config classes.

Every door that builds a configuration (``create_model(..., **overrides)``, training's
``model.overrides``, ``ablate``, stored configurations, detection) goes through the config
class, so each gets the same one-line :class:`~mambairv2.errors.ConfigError` naming the field and
what it accepts, before any tensor is allocated.
"""
from __future__ import annotations

import math
import numbers
import reprlib
from typing import Any, Optional, Sequence, Tuple

from ..errors import ConfigError

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 3, 8, 8, 6, 60, 60


def show(value: Any) -> str:
    """A short ``repr`` (bounded in length and in time, whatever the value's size)."""
    return _REPR.repr(value)


def fail(name: str, what: str, value: Any) -> ConfigError:
    """``<name> must be <what>, got <value>`` as a :class:`ConfigError` about ``name``."""
    return ConfigError(f"{name} must be {what}, got {show(value)}", field=name)


def integer(name: str, value: Any, minimum: int = 1, odd: bool = False) -> int:
    """``value`` as an int ≥ ``minimum`` (an integral float such as 16.0 counts)."""
    what = f"{'an odd' if odd else 'an'} integer ≥ {minimum}" if minimum != 1 else \
        f"{'an odd' if odd else 'a'} positive integer"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum \
            or (odd and value % 2 == 0):
        raise fail(name, what, value)
    return int(value)


def number(name: str, value: Any) -> float:
    """``value`` as a finite float > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
            or float(value) <= 0:
        raise fail(name, "a positive number", value)
    return float(value)


def integers(name: str, value: Any) -> Tuple[int, ...]:
    """``value`` (a list or tuple) as a non-empty tuple of positive ints."""
    what = "a non-empty list of positive integers (one per group)"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise fail(name, what, value)
    try:
        return tuple(integer(name, v) for v in value)
    except ConfigError:
        raise fail(name, what, value) from None


def optional_integer(name: str, value: Any) -> Optional[int]:
    return None if value is None else integer(name, value)


def choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices`` (true / false never stand for 1 / 0)."""
    if isinstance(value, bool) or value not in choices:
        raise fail(name, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise fail(name, "true or false", value)
    return value


def unknown_fields(cls: type, names: Any, label: str) -> None:
    """Raises a :class:`ConfigError` naming the first of ``names`` that is not a field of
    ``cls`` (with the closest field, when there is one)."""
    import dataclasses
    import difflib

    fields = [f.name for f in dataclasses.fields(cls)]
    for n in names:
        if not isinstance(n, str):
            raise ConfigError(f"{label}: field names are strings, got {show(n)}")
        if n not in fields:
            close = difflib.get_close_matches(n, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (fields: {', '.join(fields)})"
            raise ConfigError(f"{n} is not a field of {label}{hint}", field=n)
