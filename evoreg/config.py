"""Hyperparameter dataclasses: building them from keyword arguments or ``key=value`` strings.

Every optimizer and problem declares a ``Config`` dataclass whose defaults are its paper's.
Unknown keys are refused with close matches; strings from the command line are converted
to the field's declared type.
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from .errors import EvoregError, unknown_name


def config_fields(config_cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(config_cls) if f.init]


def field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def make_config(config_cls: type, owner: str, values: dict[str, Any]) -> Any:
    """Build ``config_cls(**values)``; an unknown key names close matches among the fields."""
    hints = typing.get_type_hints(config_cls)
    names = [f.name for f in config_fields(config_cls)]
    converted = {}
    for key, value in values.items():
        if key not in names:
            raise unknown_name(f"hyperparameter of {owner}", key, names)
        if isinstance(value, str):
            value = coerce(value, hints.get(key, Any), key)
        converted[key] = value
    try:
        return config_cls(**converted)
    except (TypeError, ValueError) as error:  # a missing field, or a value out of range
        raise EvoregError(f"{owner}: {error}") from error


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
        raise EvoregError(f"{key}={value!r} fits none of {annotation}")
    if origin is Literal:
        choices = get_args(annotation)
        for choice in choices:
            if str(choice) == value:
                return choice
        raise EvoregError(f"{key}={value!r} is not one of {', '.join(map(repr, choices))}")
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
