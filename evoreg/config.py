"""Hyperparameter dataclasses: building them from keyword arguments or ``key=value`` strings.

Every optimizer and problem declares a ``Config`` dataclass whose defaults are its paper's.
A Config is declarations: ``make_config`` refuses unknown keys (with close matches), converts
command-line strings to each field's declared type, checks every value against its type
(``Literal`` choices included) and against the bounds in the field's metadata, which
``bounded`` writes::

    popsize: int = bounded(20, ge=1)  #: N, children per generation
    sigma: float = bounded(0.01, gt=0)  #: std of the Gaussian noise

Only relations between fields (shares that sum to one, say) need a ``__post_init__``;
a ``ValueError`` raised there reaches the user as one line naming the owner.

A NaN or infinite value given for a field is refused (``--set noise=nan`` would silently
turn noise off, ``--set optimum=inf`` would run to a best loss of inf) unless the field
declares it: its default is that value, or a bound names that infinity
(``bounded(math.inf, le=math.inf)``).
"""

from __future__ import annotations

import ast
import dataclasses
import math
import types
import typing
from numbers import Integral, Real
from typing import Any, Literal, Union, get_args, get_origin

from .errors import EvoregError, close_matches, unknown_name

#: Bound keys of a field's metadata: value >= ge, > gt, <= le, < lt.
BOUNDS = ("ge", "gt", "le", "lt")


def bounded(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A dataclass field with ``default`` whose numeric values must lie within the bounds
    (``ge``: >=, ``gt``: >, ``le``: <=, ``lt``: <); ``make_config`` checks them and
    ``evoreg info`` shows them. ``le=math.inf`` (``ge=-math.inf``) lets a user give inf
    (-inf), which is otherwise refused."""
    given = {"ge": ge, "gt": gt, "le": le, "lt": lt}
    return dataclasses.field(
        default=default, metadata={k: v for k, v in given.items() if v is not None}
    )


@dataclasses.dataclass
class NoConfig:
    """The Config of an optimizer or problem without hyperparameters."""


def config_fields(config_cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(config_cls) if f.init]


def field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def make_config(config_cls: type, owner: str, values: dict[str, Any]) -> Any:
    """Build ``config_cls(**values)`` and check every field's value against its type and
    bounds; an unknown key names close matches among the fields."""
    if not dataclasses.is_dataclass(config_cls) or not isinstance(config_cls, type):
        raise EvoregError(
            f"{owner}: its Config ({config_cls!r}) must be a class decorated with "
            "@dataclasses.dataclass, one field per hyperparameter"
        )
    hints = _type_hints(config_cls, owner)
    fields = {f.name: f for f in config_fields(config_cls)}
    converted = {}
    for key, value in values.items():
        if key not in fields:
            raise unknown_name(f"hyperparameter of {owner}", key, list(fields))
        if isinstance(value, str):
            value = coerce(value, hints.get(key, Any), key)
        try:
            check_finite(fields[key], value)
        except EvoregError as error:
            raise EvoregError(f"{owner}: {error}") from None
        converted[key] = value
    # Each value alone first, so that a value out of its range is named as such before a
    # __post_init__ complains about a relation it breaks; then again after __post_init__,
    # which may fill in values (presets).
    _check_fields(config_cls, owner, hints, lambda f: converted.get(f.name, field_default(f)))
    try:
        config = config_cls(**converted)
    except (TypeError, ValueError) as error:  # a missing field, or a relation between fields
        raise EvoregError(f"{owner}: {error}") from error
    _check_fields(config_cls, owner, hints, lambda f: getattr(config, f.name))
    return config


def _check_fields(config_cls: type, owner: str, hints: dict, value_of: Any) -> None:
    for field in config_fields(config_cls):
        value = value_of(field)
        if value is dataclasses.MISSING:
            continue
        try:
            check_value(field, value, hints.get(field.name, Any))
        except EvoregError as error:
            raise EvoregError(f"{owner}: {error}") from None


def _type_hints(config_cls: type, owner: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(config_cls)
    except Exception as error:  # noqa: BLE001 - a name the annotations use is not importable
        raise EvoregError(
            f"{owner}: the annotations of its Config cannot be resolved ({error})"
        ) from None


def check_value(field: dataclasses.Field, value: Any, annotation: Any) -> None:
    """Refuse ``value`` if it does not fit the field's type or its metadata's bounds."""
    name = field.name
    if not fits(value, annotation):
        choices = _literal_choices(annotation)
        if choices and isinstance(value, str):
            raise _not_a_choice(name, value, choices)
        raise EvoregError(f"{name}={value!r} is not a {type_name(annotation)}")
    if isinstance(value, Real) and not isinstance(value, bool):
        allowed = describe_bounds(field)
        if allowed and not _within(value, field.metadata):
            raise EvoregError(f"{name} must be {allowed}, got {value!r}")


#: The range of a 64-bit integer: torch and numpy cannot take a size or count outside it.
INT64 = (-(2**63), 2**63 - 1)


def check_finite(field: dataclasses.Field, value: Any) -> None:
    """Refuse a NaN or infinite ``value`` that the field does not declare as meaningful,
    and an integer that no tensor size or count can be (beyond 64 bits).

    Only values a user gives are checked: a plugin may use NaN or inf as its own default
    (a sentinel), and the user may then give that same value.
    """
    if isinstance(value, Integral) and not isinstance(value, bool):
        if not INT64[0] <= value <= INT64[1]:
            raise EvoregError(f"{field.name}={value!r} is beyond a 64-bit integer")
        return
    if not isinstance(value, Real) or isinstance(value, bool):
        return
    if math.isfinite(value):
        return
    default = field_default(field)
    if isinstance(default, Real) and not isinstance(default, bool) and (
        default == value or (math.isnan(default) and math.isnan(value))
    ):
        return
    if math.isnan(value):
        raise EvoregError(f"{field.name}={value!r} is not a number; give a finite number")
    if field.metadata.get("le" if value > 0 else "ge") == value:
        return
    allowed = describe_bounds(field)
    raise EvoregError(
        f"{field.name}={value!r} is not finite; give a finite number"
        + (f" {allowed}" if allowed else "")
    )


def _within(value: float, bounds: typing.Mapping[str, float]) -> bool:
    return (
        ("ge" not in bounds or value >= bounds["ge"])
        and ("gt" not in bounds or value > bounds["gt"])
        and ("le" not in bounds or value <= bounds["le"])
        and ("lt" not in bounds or value < bounds["lt"])
    )


def describe_bounds(field: dataclasses.Field) -> str:
    """The field's bounds as text: ``>= 1``, ``> 0``, ``in [0, 1)``; empty if it has none."""
    bounds = {key: field.metadata[key] for key in BOUNDS if key in field.metadata}
    low = [(k, v) for k, v in bounds.items() if k in ("ge", "gt")]
    high = [(k, v) for k, v in bounds.items() if k in ("le", "lt")]
    if low and high:
        (low_key, low_value), (high_key, high_value) = low[0], high[0]
        left, right = "[" if low_key == "ge" else "(", "]" if high_key == "le" else ")"
        return f"in {left}{low_value:g}, {high_value:g}{right}"
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return " and ".join(f"{symbols[k]} {v:g}" for k, v in (*low, *high))


def fits(value: Any, annotation: Any) -> bool:
    """True if ``value`` is of the annotated type (ints count as floats, bools as neither)."""
    origin = get_origin(annotation)
    if annotation is Any or isinstance(annotation, (str, typing.ForwardRef)):
        return True
    if origin in (Union, types.UnionType):
        return any(fits(value, option) for option in get_args(annotation))
    if origin is Literal:
        return any(value == choice and type(value) is type(choice)
                   for choice in get_args(annotation))
    if annotation is type(None) or annotation is None:
        return value is None
    if annotation is bool:
        return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy's bool
    if annotation is int:
        return isinstance(value, Integral) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, Real) and not isinstance(value, bool)
    if origin is not None:
        annotation = origin
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _not_a_choice(key: str, value: str, choices: tuple) -> EvoregError:
    matches = close_matches(value, [str(c) for c in choices])
    hint = f"; did you mean {', '.join(map(repr, matches))}?" if matches else ""
    return EvoregError(f"{key}={value!r} is not one of {', '.join(map(repr, choices))}{hint}")


def _literal_choices(annotation: Any) -> tuple:
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(c for option in get_args(annotation) for c in _literal_choices(option))
    return ()


def type_name(annotation: Any) -> str:
    """A readable name of an annotation (``int``, ``int | None``, ``'best' | 'first'``)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(option) for option in get_args(annotation))
    if origin is Literal:
        return " | ".join(repr(choice) for choice in get_args(annotation))
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def parse_assignment(text: str) -> tuple[str, str]:
    """Split a command-line ``key=value`` (the value stays a string until its type is known)."""
    if "=" not in text:
        raise EvoregError(f"expected key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def coerce(value: str, annotation: Any, key: str) -> Any:
    """Convert a command-line string to the annotated type (int, float, bool, str, Literal...)."""
    origin = get_origin(annotation)
    if annotation is Any:
        return _literal(value)
    if origin in (Union, types.UnionType):
        options = get_args(annotation)
        if value.lower() in ("none", "null") and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option, key)
            except EvoregError as error:
                errors.append(str(error))
        if all(get_origin(o) is Literal for o in options if o is not type(None)):
            raise _not_a_choice(key, value, _literal_choices(annotation))
        raise EvoregError(f"{key}={value!r} is not a {type_name(annotation)}")
    if origin is Literal:
        choices = get_args(annotation)
        for choice in choices:
            if str(choice) == value:
                return choice
        raise _not_a_choice(key, value, choices)
    if annotation is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise EvoregError(f"{key}={value!r} is not a boolean (true/false)")
    if annotation in (int, float):
        try:
            number = float(value) if annotation is float else int(value)
        except ValueError:
            raise EvoregError(f"{key}={value!r} is not a {annotation.__name__}") from None
        return number
    if annotation is str:
        return value
    if origin in (list, tuple) or annotation in (list, tuple):
        parsed = _literal(value)
        if not isinstance(parsed, (list, tuple)):
            raise EvoregError(f"{key}={value!r} is not a list such as [1, 2]")
        return (origin or annotation)(parsed)
    return _literal(value)


def _literal(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value
