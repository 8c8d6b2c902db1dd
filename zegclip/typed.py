"""Typed configuration fields: plain values (YAML, JSON, ``--set``, registry parameters) converted and checked
against a dataclass's type hints, with a one-line error naming the field, the value and the expected type.

Why this exists: PyYAML follows YAML 1.1, which reads ``2e-4`` and ``1e-3`` (no dot) as *strings*; without a
conversion they reached AdamW and crashed deep inside it, after the model was built and ``config.json`` written.
Every config dataclass of the package is built through :func:`build`, so a wrong value fails before any work.

Rules: ``float`` takes ints and numeric strings (``"2e-4"``) and must be finite; ``int`` takes integral numbers
(``1e3``) and integer strings, never a bool; ``bool`` takes only true/false; ``str`` takes only strings;
``X | None`` also takes null; ``tuple[...]`` takes a list of the right length; nested dataclasses take mappings.

Example::

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Train:
    ...     lr: float = 0.1
    ...     iters: int = 10
    >>> build(Train, {"lr": "2e-4", "iters": 1e3}, "train")
    Train(lr=0.0002, iters=1000)
    >>> build(Train, {"iters": "abc"}, "train")
    Traceback (most recent call last):
    ...
    zegclip.typed.ConfigError: train.iters: 'abc' is not an integer
"""
from __future__ import annotations

import collections.abc
import dataclasses
import math
import types
import typing
from typing import Any, Literal, Mapping, Union

__all__ = ["ConfigError", "build", "convert", "describe"]


class ConfigError(ValueError):
    """A configuration value of the wrong type or out of range (a one-line message naming the field)."""


_NAMES = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}


def describe(tp: Any) -> str:
    """The expected type in words, for error messages."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp in _NAMES:
        return _NAMES[tp]
    if origin in (Union, types.UnionType):
        parts = [describe(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {describe(args[0])}"
        return f"a list of {len(args)} items ({', '.join(describe(a) for a in args)})"
    if origin in (dict, collections.abc.Mapping) or tp in (dict, Mapping):
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping of {tp.__name__} fields"
    return getattr(tp, "__name__", str(tp))


def _fail(where: str, value: Any, tp: Any) -> ConfigError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return ConfigError(f"{where}: {shown} is not {describe(tp)}")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def convert(value: Any, tp: Any, where: str) -> Any:
    """``value`` converted to type ``tp`` (a type hint), or :class:`ConfigError` naming ``where``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # `X | None`: X's own, more precise message
            return convert(value, options[0], where)
        for option in options:
            try:
                return convert(value, option, where)
            except ConfigError:
                continue
        raise _fail(where, value, tp)
    if origin is Literal:
        if value in args:
            return value
        raise _fail(where, value, tp)
    if tp in (bool, str):  # taken as they are: no "yes" -> True, no 3 -> "3"
        if isinstance(value, tp):
            return value
        raise _fail(where, value, tp)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        x = _number(value)
        if x is not None and math.isfinite(x) and x.is_integer():
            return int(x)
        raise _fail(where, value, tp)
    if tp is float:
        x = _number(value)
        if x is not None and math.isfinite(x):
            return x
        raise _fail(where, value, tp)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _fail(where, value, tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(value) != len(args):
            raise _fail(where, value, tp)
        return tuple(convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args or [Any] * len(value))))
    if origin in (dict, collections.abc.Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _fail(where, value, tp)
        kt, vt = args if len(args) == 2 else (Any, Any)
        return {convert(k, kt, f"{where} key"): convert(v, vt, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return build(tp, value, where)
        raise _fail(where, value, tp)
    return value


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type hints of a dataclass's fields."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def convert_fields(cls: type, data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The entries of ``data`` converted to the types of ``cls``'s fields; unknown names are an error."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: {data!r} is not a mapping of {cls.__name__} fields")
    types_ = field_types(cls)
    unknown = sorted(str(k) for k in set(data) - set(types_))
    if unknown:
        raise ConfigError(f"{where + ': ' if where else ''}unknown field(s) {unknown}; known: {sorted(types_)}")
    return {k: convert(v, types_[k], f"{where}.{k}" if where else k) for k, v in data.items()}


def build(cls: type, data: Mapping[str, Any], where: str, base: Any = None) -> Any:
    """An instance of dataclass ``cls`` from ``data`` (over ``base``'s values when given), every field converted;
    a check in ``__post_init__`` that fails becomes a :class:`ConfigError` prefixed with ``where``."""
    values = convert_fields(cls, data, where)
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{where}: {message}") from exc


def at_least(low: int):
    """An ``argparse`` type for integers ``>= low``: zero and negative values are rejected, never replaced by a
    default (argparse turns the error into a one-line usage message and exit status 2)."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = convert(text, int, "value")
        except ConfigError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse
