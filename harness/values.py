"""Values from a scenario file (TOML) or the control API (JSON) as the model's types.

One converter for both: the field's own annotation says what is allowed, a wrong value
is an error naming the field, the value and what is allowed, lists become tuples,
strings enums, tables (objects) dataclasses. The two formats differ only in words
(TOML says "a table", JSON "an object") and in that JSON has null, so an optional
field takes `null` from the API while a file leaves the field out.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from mailharness.servers.errors import ConfigError, choice_error

__all__ = [
    "PYTHON_ONLY",
    "Format",
    "annotated",
    "build",
    "build_kind",
    "check_keys",
    "convert",
    "describe",
    "hints",
]

Format = Literal["toml", "json"]

#: Fields neither format can set (objects only Python builds), with why.
PYTHON_ONLY = {
    "replies": "custom reply texts (a personality's table, `dataclasses.replace`d): Python only"
}


def hints(cls: type) -> dict[str, Any]:
    """A dataclass's resolved field annotations."""
    return typing.get_type_hints(cls)


def annotated(cls: type) -> list[str]:
    """The names `hints(cls)` has, in its order, without resolving any annotation (which
    evaluates each one: ~4 ms for SMTPSettings, more than a `serve` of a file that only
    disables SMTP needs to reach its greeting; issue 13)."""
    names: dict[str, None] = {}
    for base in reversed(cls.__mro__):
        # As typing.get_type_hints reads them; not inspect.get_annotations, which `serve`
        # leaves unloaded (harness/deferred.py).
        names.update(dict.fromkeys(base.__dict__.get("__annotations__", {})))  # noqa: RUF063
    return list(names)


def _is_callable(hint: Any) -> bool:
    return typing.get_origin(hint) is Callable or hint is Callable


def _plural(text: str) -> str:
    return text.removeprefix("an ").removeprefix("a ") + "s" if text[:2] in ("a ", "an") else text


def describe(hint: Any, fmt: Format = "toml") -> str:
    """What a value for `hint` must be, in the words of `fmt`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        arms = [
            describe(a, fmt)
            for a in args
            if not _is_callable(a) and (a is not type(None) or fmt == "json")
        ]
        return " or ".join(arms)
    if hint is type(None):
        return "null"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        return f"a list of {_plural(describe(args[0], fmt))}" if args else "a list"
    simple: dict[object, str] = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        bytes: "a string",
    }
    if hint in simple:
        return simple[hint]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if fmt == "json":
            return "an object with " + ", ".join(f.name for f in dataclasses.fields(hint))
        inner = ", ".join(f"{k} = {describe(v, fmt)}" for k, v in hints(hint).items())
        return f"a table {{ {inner} }}"
    return "not settable from a file" if fmt == "toml" else str(hint)


class _Mismatch(Exception):
    """The value does not have the hint's type (turned into a ConfigError by `convert`)."""


def convert(where: str, value: object, hint: Any, fmt: Format = "toml") -> Any:
    """`value` as the field's type; else an error naming `where` (the field), the value
    and what is allowed. An error inside a table (object) names the field inside."""
    try:
        return _convert(where, value, hint, fmt)
    except _Mismatch:
        raise ConfigError(f"{where}={value!r}: expected {describe(hint, fmt)}") from None


def _convert(where: str, value: object, hint: Any, fmt: Format) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            if _is_callable(arm) or (arm is type(None) and fmt == "toml"):
                continue
            try:
                return _convert(where, value, arm, fmt)
            except _Mismatch:
                continue
        raise _Mismatch
    if hint is type(None):
        if value is None:
            return None
        raise _Mismatch
    if hint is typing.Any:
        return value
    if origin is typing.Literal:
        if value in args:
            return value
        raise _Mismatch
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _Mismatch
        if (len(args) == 2 and args[1] is Ellipsis) or len(args) == 1:
            return tuple(convert(f"{where}[{i}]", v, args[0], fmt) for i, v in enumerate(value))
        if len(args) != len(value):
            raise _Mismatch
        return tuple(
            convert(f"{where}[{i}]", v, a, fmt)
            for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if hint is bytes:
        if isinstance(value, str):
            return value.encode()
        raise _Mismatch
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        for member in hint:
            if value == member.value:
                return member
        raise _Mismatch
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise _Mismatch
        return build(where, hint, value, fmt)
    raise _Mismatch


def build(where: str, cls: type, table: Mapping[str, Any], fmt: Format = "toml") -> Any:
    """A `cls` from a table (object): every key a field, every value of the field's type."""
    field_hints = hints(cls)
    settable = [name for name in field_hints if name not in PYTHON_ONLY]
    check_keys(where, table, settable)
    values = {
        name: convert(f"{where}.{name}", v, field_hints[name], fmt) for name, v in table.items()
    }
    for field in dataclasses.fields(cls):
        missing = field.default is dataclasses.MISSING
        if missing and field.default_factory is dataclasses.MISSING and field.name not in values:
            raise ConfigError(
                f"{where}: {field.name} is required ({describe(field_hints[field.name], fmt)})"
            )
    try:
        return cls(**values)
    except (ConfigError, TypeError) as error:
        raise ConfigError(f"{where}: {error}") from None


def build_kind(where: str, spec: object, kinds: Mapping[str, type], fmt: Format = "toml") -> Any:
    """A table (object) naming its class by `kind` (a fault, a schedule event): the class
    from `kinds`, then its fields checked as `build` checks them."""
    if not isinstance(spec, Mapping):
        shape = "an object" if fmt == "json" else "a table"
        raise ConfigError(f"{where}={spec!r}: expected {shape} with kind and its fields")
    if "kind" not in spec:
        raise ConfigError(f"{where}: needs kind = one of {', '.join(map(repr, kinds))}")
    cls = kinds.get(spec["kind"]) if isinstance(spec["kind"], str) else None
    if cls is None:
        raise choice_error(f"{where}: kind", spec["kind"], kinds)
    params = {k: v for k, v in spec.items() if k != "kind"}
    return build(f"{where} ({spec['kind']})", cls, params, fmt)


def check_keys(where: str, table: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Every key a known field; else an error naming it and the allowed ones."""
    allowed = tuple(allowed)
    for key in table:
        if key not in allowed:
            raise choice_error(f"{where}: field", key, allowed)
