"""`@record`: a frozen, slotted, keyword-only dataclass, made without per-class generated code.

`@dataclass(frozen=True, slots=True, kw_only=True)` compiles an `__init__`, `__repr__`,
`__eq__`, `__hash__` and a frozen `__setattr__` for every class, each naming every field:
~0.5 ms a class, and `mailharness serve` defines dozens before its greeting (the IMAP
reply table alone, ~200 fields, cost ~9 ms; issue 13). Records are built a few times per
process (configs, scenarios, faults, reply tables), never per command, so the same
methods as loops over the fields cost nothing that matters. They behave as the generated
ones do: keyword-only arguments, defaults and default factories, `__post_init__`,
`FrozenInstanceError` on assignment, equality and hash over the compared fields, repr,
`dataclasses.fields`/`replace`/`asdict`, copy and pickle. For mypy it is a dataclass.

    @record  # the class needs a docstring (dataclass would make one; ours would be wrong)
    class Latency:
        ms: int
        jitter_ms: int = 0
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")

_DEFAULT, _FACTORY, _REQUIRED = range(3)


def _values(names: tuple[str, ...]) -> Callable[[Any], tuple[object, ...]]:
    """A function that reads `names` off an object as a tuple (attrgetter, for any count)."""
    if len(names) > 1:
        return operator.attrgetter(*names)
    if len(names) == 1:
        get = operator.attrgetter(names[0])
        return lambda obj: (get(obj),)
    return lambda obj: ()


def _listed(names: list[str]) -> str:
    """Names quoted as Python's own "missing argument" message lists them."""
    quoted = [repr(n) for n in names]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


@dataclass_transform(
    kw_only_default=True, frozen_default=True, field_specifiers=(dataclasses.field,)
)
def record(cls: type[T]) -> type[T]:
    """`cls` as `@dataclass(frozen=True, slots=True, kw_only=True)` would make it."""
    if not cls.__dict__.get("__doc__"):
        # dataclass would write one from the signature; ours is not that signature.
        raise TypeError(f"{cls.__qualname__}: a record needs a docstring")
    table: Any = dataclasses.dataclass(slots=True, kw_only=True, init=False, repr=False, eq=False)(
        cls
    )
    fields = dataclasses.fields(table)
    plan: list[tuple[str, int, Any]] = []
    for f in fields:
        if not f.init:
            raise TypeError(f"{table.__qualname__}.{f.name}: a record's fields are all in __init__")
        if f.default is not dataclasses.MISSING:
            plan.append((f.name, _DEFAULT, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            plan.append((f.name, _FACTORY, f.default_factory))
        else:
            plan.append((f.name, _REQUIRED, None))
    names = frozenset(f.name for f in fields)
    every = _values(tuple(f.name for f in fields))
    compared = _values(tuple(f.name for f in fields if f.compare))
    hashed = _values(tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash)))
    shown = tuple(f.name for f in fields if f.repr)
    shown_values = _values(shown)
    post_init = hasattr(table, "__post_init__")
    qualname = table.__qualname__
    set_field = object.__setattr__

    def __init__(self: Any, **given: Any) -> None:
        if not given.keys() <= names:
            unknown = min(given.keys() - names)
            raise TypeError(f"{qualname}.__init__() got an unexpected keyword argument {unknown!r}")
        missing = []
        for name, kind, default in plan:
            if name in given:
                set_field(self, name, given[name])
            elif kind == _DEFAULT:
                set_field(self, name, default)
            elif kind == _FACTORY:
                set_field(self, name, default())
            else:
                missing.append(name)
        if missing:
            raise TypeError(
                f"{qualname}.__init__() missing {len(missing)} required keyword-only "
                f"argument{'s' if len(missing) > 1 else ''}: {_listed(missing)}"
            )
        if post_init:
            self.__post_init__()

    def __repr__(self: Any) -> str:
        pairs = zip(shown, shown_values(self), strict=True)
        return f"{qualname}({', '.join(f'{name}={value!r}' for name, value in pairs)})"

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is self.__class__:
            return bool(compared(self) == compared(other))
        return NotImplemented

    def __hash__(self: Any) -> int:
        return hash(hashed(self))

    def __setattr__(self: Any, name: str, value: object) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self: Any, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def __getstate__(self: Any) -> tuple[object, ...]:
        return tuple(every(self))

    def __setstate__(self: Any, state: tuple[object, ...]) -> None:
        for f, value in zip(fields, state, strict=True):
            set_field(self, f.name, value)

    methods = (__init__, __repr__, __eq__, __hash__, __setattr__, __delattr__)
    for method in (*methods, __getstate__, __setstate__):
        method.__qualname__ = f"{qualname}.{method.__name__}"
        setattr(table, method.__name__, method)
    return table  # type: ignore[no-any-return]
