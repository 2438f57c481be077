"""`@text_table`: a table of reply texts as a frozen, slotted, keyword-only dataclass, made cheaply.

`@dataclass(frozen=True, slots=True, kw_only=True)` compiles an `__init__`, `__repr__`,
`__eq__`, `__hash__` and a frozen `__setattr__` that each name every field: for the IMAP
table's ~200 fields that is ~9 ms of every `mailharness serve` start (issue 13). A table
is built a few times per process (one per personality, one per `dataclasses.replace`),
so the same methods as loops over the fields cost nothing that matters. They behave as
the generated ones do: keyword-only arguments with defaults, `FrozenInstanceError` on
assignment, equality and hash over every field, `dataclasses.fields`/`replace`/`asdict`,
copy and pickle.

    @text_table
    class Replies:
        greeting: str = "Dovecot ready."
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(kw_only_default=True, frozen_default=True)
def text_table(cls: type[T]) -> type[T]:
    """`cls` as a frozen, slotted, keyword-only dataclass whose fields all have defaults."""
    table: Any = dataclasses.dataclass(slots=True, kw_only=True, init=False, repr=False, eq=False)(
        cls
    )
    fields = dataclasses.fields(table)
    for f in fields:
        if f.default is dataclasses.MISSING or not (f.init and f.repr and f.compare):
            raise TypeError(f"{table.__qualname__}.{f.name}: a table's fields are plain defaults")
    defaults = {f.name: f.default for f in fields}
    names = tuple(defaults)
    if len(names) < 2:
        raise TypeError(f"{table.__qualname__}: a text table has two fields or more")
    values = operator.attrgetter(*names)  # a tuple of every field, in order
    qualname = table.__qualname__
    set_field = object.__setattr__

    def __init__(self: Any, **given: Any) -> None:
        unknown = given.keys() - defaults.keys()
        if unknown:
            raise TypeError(
                f"{qualname}.__init__() got an unexpected keyword argument {min(unknown)!r}"
            )
        for name, default in defaults.items():
            set_field(self, name, given.get(name, default))

    def __repr__(self: Any) -> str:
        pairs = zip(names, values(self), strict=True)
        shown = ", ".join(f"{name}={value!r}" for name, value in pairs)
        return f"{qualname}({shown})"

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is self.__class__:
            return bool(values(self) == values(other))
        return NotImplemented

    def __hash__(self: Any) -> int:
        return hash(values(self))

    def __setattr__(self: Any, name: str, value: object) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self: Any, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def __getstate__(self: Any) -> tuple[object, ...]:
        return tuple(values(self))

    def __setstate__(self: Any, state: tuple[object, ...]) -> None:
        for name, value in zip(names, state, strict=True):
            set_field(self, name, value)

    methods = (__init__, __repr__, __eq__, __hash__, __setattr__, __delattr__)
    for method in (*methods, __getstate__, __setstate__):
        method.__qualname__ = f"{qualname}.{method.__name__}"
        setattr(table, method.__name__, method)
    return table  # type: ignore[no-any-return]
