"""Dataclasses that cost less to define: `@record` and `@lazy_dataclass` (issue 13).

`@dataclass(frozen=True, slots=True, kw_only=True)` compiles an `__init__`, `__repr__`,
`__eq__`, `__hash__` and a frozen `__setattr__` for every class, each naming every field:
~0.5 ms a class, and `mailharness serve` defines dozens before its greeting (the IMAP
reply table alone, ~200 fields, cost ~9 ms; issue 13). Records are built a few times per
process (configs, scenarios, faults, reply tables), never per command, so the same
methods as loops over the fields cost nothing that matters. They behave as the generated
ones do: keyword-only arguments, defaults and default factories, `__post_init__`,
`FrozenInstanceError` on assignment, equality and hash over the compared fields, repr,
`dataclasses.fields`/`replace`/`asdict`, copy and pickle. For mypy it is a dataclass.

`@lazy_dataclass(...)` is for the classes built per command or per message (commands,
responses, transcript events, MIME parts), where only dataclass's own generated code
is fast enough: it takes `@dataclass`'s arguments and generates that very code, but at
the class's first use (its first instance, repr, comparison...) instead of when the
module is imported, so a class the greeting does not need costs nothing before it.

    @record  # the class needs a docstring (dataclass would make one; ours would be wrong)
    class Latency:
        ms: int
        jitter_ms: int = 0
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import operator
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T")

_DEFAULT, _FACTORY, _REQUIRED = range(3)
_OWN_METHODS = ("__init__", "__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__")


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


@overload
def record(cls: type[T], /) -> type[T]: ...


@overload
def record(*, frozen: bool = True, kw_only: bool = True) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(
    kw_only_default=True, frozen_default=True, field_specifiers=(dataclasses.field,)
)
def record(
    cls: type[T] | None = None, /, *, frozen: bool = True, kw_only: bool = True
) -> type[T] | Callable[[type[T]], type[T]]:
    """`cls` as `@dataclass(frozen=..., slots=True, kw_only=...)` would make it (frozen
    and keyword-only unless told otherwise), without generated code."""
    if cls is None:
        return lambda cls: _record(cls, frozen=frozen, kw_only=kw_only)
    return _record(cls, frozen=frozen, kw_only=kw_only)


def _record(cls: type[T], *, frozen: bool, kw_only: bool) -> type[T]:
    if not cls.__dict__.get("__doc__"):
        # dataclass would write one from the signature; ours is not that signature.
        raise TypeError(f"{cls.__qualname__}: a record needs a docstring")
    own = {name for name in _OWN_METHODS if name in cls.__dict__}
    if own:
        # dataclass keeps a class's own methods (and refuses a frozen one's __setattr__);
        # no record needs that, so none is written for it.
        raise TypeError(f"{cls.__qualname__}: a record writes {', '.join(sorted(own))} itself")
    table: Any = dataclasses.dataclass(
        slots=True, kw_only=kw_only, init=False, repr=False, eq=False
    )(cls)
    fields = dataclasses.fields(table)
    plan: list[tuple[str, int, Any]] = []
    unset: list[tuple[str, int, Any]] = []  # init=False fields that have a default
    for f in fields:
        if f.default is not dataclasses.MISSING:
            kind, default = _DEFAULT, f.default
        elif f.default_factory is not dataclasses.MISSING:
            kind, default = _FACTORY, f.default_factory
        else:
            kind, default = _REQUIRED, None
        if f.init:
            plan.append((f.name, kind, default))
        elif kind != _REQUIRED:
            unset.append((f.name, kind, default))
    names = frozenset(name for name, _, _ in plan)
    positional = () if kw_only else tuple(name for name, _, _ in plan)
    every = _values(tuple(f.name for f in fields))
    compared = _values(tuple(f.name for f in fields if f.compare))
    hashed = _values(tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash)))
    shown = tuple(f.name for f in fields if f.repr)
    shown_values = _values(shown)
    post_init = hasattr(table, "__post_init__")
    qualname = table.__qualname__
    set_field = object.__setattr__
    argument = "keyword-only argument" if kw_only else "positional argument"
    # Python's wording when too many are given: self counts, defaults make a range.
    required = 1 + sum(kind == _REQUIRED for _, kind, _ in plan[: len(positional)])
    takes = (
        f"{len(positional) + 1}"
        if required == len(positional) + 1
        else (f"from {required} to {len(positional) + 1}")
    )

    def __init__(self: Any, *args: Any, **given: Any) -> None:
        if args:
            if len(args) > len(positional):
                raise TypeError(
                    f"{qualname}.__init__() takes {takes} positional "
                    f"argument{'s' if positional else ''} but {len(args) + 1} were given"
                )
            for name, value in zip(positional, args, strict=False):
                if name in given:
                    raise TypeError(
                        f"{qualname}.__init__() got multiple values for argument {name!r}"
                    )
                given[name] = value
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
                f"{qualname}.__init__() missing {len(missing)} required "
                f"{argument}{'s' if len(missing) > 1 else ''}: {_listed(missing)}"
            )
        for name, kind, default in unset:
            set_field(self, name, default if kind == _DEFAULT else default())
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

    methods: tuple[Any, ...] = (__init__, __repr__, __eq__)
    if frozen:
        methods += (__hash__, __setattr__, __delattr__, __getstate__, __setstate__)
    else:
        table.__hash__ = None  # as dataclass: a mutable class that compares is unhashable
    for method in methods:
        method.__qualname__ = f"{qualname}.{method.__name__}"
        setattr(table, method.__name__, method)
    return table  # type: ignore[no-any-return]


# The methods dataclass generates, which `lazy_dataclass` puts off (a frozen class's
# `__setattr__` and `__delattr__` it writes at once, as dataclass would, without compiling).
_GENERATED = ("__init__", "__repr__", "__eq__", "__hash__")


@dataclass_transform(field_specifiers=(dataclasses.field,))
def lazy_dataclass(
    *,
    frozen: bool = False,
    slots: bool = False,
    kw_only: bool = False,
    eq: bool = True,
    repr: bool = True,
) -> Callable[[type[T]], type[T]]:
    """`@dataclass(frozen=..., slots=..., kw_only=..., eq=..., repr=...)`, its methods
    generated at the class's first use rather than at its definition (see the module)."""
    params = {"frozen": frozen, "kw_only": kw_only, "eq": eq, "repr": repr}

    def wrap(cls: type[T]) -> type[T]:
        if cls.__bases__ != (object,) or "__hash__" in cls.__dict__:
            raise TypeError(f"{cls.__qualname__}: lazy_dataclass takes plain classes only")
        # The class body as written: dataclass turns it into the real methods later.
        body = {
            name: copy.copy(value) if isinstance(value, dataclasses.Field) else value
            for name, value in cls.__dict__.items()
            if name not in ("__dict__", "__weakref__")
        }
        documented = bool(cls.__dict__.get("__doc__"))  # else dataclass writes one, below
        if not documented:
            # Else dataclass asks inspect for the signature of an __init__ that is not
            # there yet, which parses object's text signature (~5 ms); ours is below.
            cls.__doc__ = cls.__name__
        made: Any = dataclasses.dataclass(
            init=False, repr=False, eq=False, slots=slots, kw_only=kw_only
        )(cls)
        stubs = [name for name in _GENERATED if _generates(name, params)]

        def generate() -> None:
            # No lock (the IMAP core imports no threading): two threads at once both
            # generate the same methods, and either's serve.
            if made.__dict__.get("__init__") is not stub_init:
                return  # generated already
            shadow = type(cls.__name__, (), dict(body))
            shadow.__qualname__ = cls.__qualname__
            real: Any = dataclasses.dataclass(frozen=frozen, kw_only=kw_only, eq=eq, repr=repr)(
                shadow
            )
            # __init__ last: once it is replaced, every method is (see the check above),
            # so a thread that finds it replaced never calls a stub again.
            for name in sorted(stubs, key=lambda name: name == "__init__"):
                setattr(made, name, real.__dict__[name])

        def stub(name: str) -> Callable[..., Any]:
            def first_use(self: Any, *args: Any, **kwargs: Any) -> Any:
                generate()
                return getattr(made, name)(self, *args, **kwargs)

            first_use.__name__ = name
            first_use.__qualname__ = f"{cls.__qualname__}.{name}"
            return first_use

        for name in stubs:
            setattr(made, name, stub(name))
        stub_init = made.__dict__["__init__"]
        if frozen:
            _freeze(made, slots)
        if eq and not frozen:
            made.__hash__ = None  # as dataclass: a mutable class that compares is unhashable
        if not documented:
            made.__doc__ = made.__name__ + _signature_text(made)
        return made  # type: ignore[no-any-return]

    return wrap


def _generates(name: str, params: dict[str, bool]) -> bool:
    """Does dataclass generate `name` for these parameters (unsafe_hash off, no own hash)?"""
    if name == "__hash__":
        return params["frozen"] and params["eq"]
    return name == "__init__" or params[name.strip("_")]


def _freeze(cls: Any, slots: bool) -> None:
    """A frozen dataclass's `__setattr__` and `__delattr__` (and with slots its pickle
    state), as dataclass writes them."""
    fields = dataclasses.fields(cls)
    names = frozenset(f.name for f in fields)

    def __setattr__(self: Any, name: str, value: object) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    def __getstate__(self: Any) -> list[object]:
        return [getattr(self, f.name) for f in fields]

    def __setstate__(self: Any, state: list[object]) -> None:
        for f, value in zip(fields, state, strict=False):
            object.__setattr__(self, f.name, value)

    methods = (__setattr__, __delattr__, *((__getstate__, __setstate__) if slots else ()))
    for method in methods:
        method.__qualname__ = f"{cls.__qualname__}.{method.__name__}"
        setattr(cls, method.__name__, method)


def _signature_text(cls: Any) -> str:
    """What dataclass writes as the docstring of a class without one: its __init__'s
    signature, which `lazy_dataclass` has not generated yet."""
    kind = {False: inspect.Parameter.POSITIONAL_OR_KEYWORD, True: inspect.Parameter.KEYWORD_ONLY}
    fields = [f for f in dataclasses.fields(cls) if f.init]
    ordered = [f for f in fields if not f.kw_only] + [f for f in fields if f.kw_only]
    parameters = [
        inspect.Parameter(
            f.name,
            kind[bool(f.kw_only)],
            default=f.default
            if f.default is not dataclasses.MISSING
            else dataclasses._HAS_DEFAULT_FACTORY  # type: ignore[attr-defined]
            if f.default_factory is not dataclasses.MISSING
            else inspect.Parameter.empty,
            annotation=f.type,
        )
        for f in ordered
    ]
    return str(inspect.Signature(parameters, return_annotation=None)).replace(" -> None", "")
