"""`@record` acts as `@dataclass(frozen=True, slots=True, kw_only=True)` does (issue 13: it
only skips the per-class generated code, ~0.5 ms a class before `serve`'s greeting)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest
from mailharness.servers.imap.replies import DOVECOT, GMAIL, Replies, Reply
from mailharness.servers.records import lazy_dataclass, record


def _table(decorate: Any) -> Any:
    @decorate
    class Table:
        """A record with every kind of field."""

        name: str
        greeting: str = "hello"
        code: Reply | None = None
        lines: tuple[str, ...] = ("a", "b")
        extra: list[str] = dataclasses.field(default_factory=list)
        cache: dict[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)
        seen: list[str] = dataclasses.field(default_factory=list, hash=False)

        def __post_init__(self) -> None:
            if not self.name:
                raise ValueError("name: expected a name")
            object.__setattr__(self, "lines", tuple(self.lines))

    return Table


Ours = _table(record)
Theirs = _table(dataclasses.dataclass(frozen=True, slots=True, kw_only=True))


def _error(make: Any) -> str:
    with pytest.raises(TypeError) as caught:
        make()
    return str(caught.value)


def test_a_record_behaves_as_the_generated_dataclass() -> None:
    for cls in (Ours, Theirs):
        made = cls(name="n", code=Reply("X", "y"), lines=["c"])
        assert made.lines == ("c",)  # __post_init__ ran
        assert cls(name="n").extra is not cls(name="n").extra  # a factory per instance
        assert dataclasses.replace(made, greeting="hi").code == made.code
        assert made == cls(name="n", code=Reply("X", "y"), lines=("c",), cache={"k": "v"})
        assert made != cls(name="m", code=Reply("X", "y"), lines=("c",))
        with pytest.raises(ValueError, match="expected a name"):
            cls(name="")
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.greeting = "changed"
        with pytest.raises(dataclasses.FrozenInstanceError):
            del made.greeting
        assert not hasattr(made, "__dict__")  # slotted
        assert copy.deepcopy(made) == made and copy.copy(made) == made
    ours, theirs = Ours(name="n", extra=["e"]), Theirs(name="n", extra=["e"])
    assert repr(ours) == repr(theirs) and "cache" not in repr(ours)
    assert dataclasses.asdict(ours) == dataclasses.asdict(theirs)
    assert [f.name for f in dataclasses.fields(Ours)] == [
        f.name for f in dataclasses.fields(Theirs)
    ]
    assert ours != theirs  # another class
    hashable = {"name": "n", "extra": (), "seen": ()}  # lists do not hash
    assert hash(Ours(**hashable)) == hash(Theirs(**hashable))
    assert hash(Ours(**hashable)) == hash(Ours(**hashable, cache={"not": "compared"}))
    for make_ours, make_theirs in (
        (lambda: Ours(), lambda: Theirs()),
        (lambda: Ours(name="n", nope=1), lambda: Theirs(name="n", nope=1)),
        (lambda: Ours("n"), lambda: Theirs("n")),
    ):
        assert _error(make_ours).split("()")[1] == _error(make_theirs).split("()")[1]


def test_the_missing_arguments_are_listed_as_python_does() -> None:
    @record
    class Three:
        """Three required fields."""

        a: int
        b: int
        c: int

    assert "missing 3 required keyword-only arguments: 'a', 'b', and 'c'" in _error(Three)


def test_the_reply_tables_are_records() -> None:
    assert dataclasses.replace(DOVECOT) == DOVECOT and DOVECOT != GMAIL
    assert dataclasses.replace(GMAIL, greeting=DOVECOT.greeting).greeting == "Dovecot ready."
    assert Replies() == DOVECOT
    assert pickle.loads(pickle.dumps(GMAIL)) == GMAIL  # module-level: picklable


def test_a_record_needs_a_docstring() -> None:
    with pytest.raises(TypeError, match="docstring"):

        @record
        class Undocumented:
            a: int = 0


def _log(decorate: Any) -> Any:
    class Log:
        """Positional fields, one outside __init__ (as `MessageLog`, `Accounts`)."""

        limit: int
        name: str = "log"
        items: list[str] = dataclasses.field(default_factory=list)
        arrived: int = dataclasses.field(default=0, init=False)
        seen: list[str] = dataclasses.field(default_factory=list, init=False)

    return decorate(Log)


@pytest.mark.parametrize("frozen", [False, True])
def test_a_positional_record_behaves_as_the_generated_dataclass(frozen: bool) -> None:
    ours = _log(record(frozen=frozen, kw_only=False))
    theirs = _log(dataclasses.dataclass(frozen=frozen, slots=True))
    for cls in (ours, theirs):
        made = cls(5, "n", ["a"])
        assert (made.limit, made.name, made.items, made.arrived, made.seen) == (
            5,
            "n",
            ["a"],
            0,
            [],
        )
        assert not hasattr(made, "never")  # no default: left unset, as dataclass does
        assert cls(5).seen is not cls(5).seen
        assert made == cls(limit=5, name="n", items=["a"])
        if frozen:
            with pytest.raises(dataclasses.FrozenInstanceError):
                made.name = "x"
        else:
            made.arrived = 3
            assert made.arrived == 3
            assert cls.__hash__ is None
    assert repr(ours(5)) == repr(theirs(5)).replace(theirs.__qualname__, ours.__qualname__)
    for bad in ((), (1, "n", [], 4), (1,)):
        kwargs = {"limit": 2} if len(bad) == 1 else {}
        with pytest.raises(TypeError) as caught_ours:
            ours(*bad, **kwargs)
        with pytest.raises(TypeError) as caught_theirs:
            theirs(*bad, **kwargs)
        assert str(caught_ours.value).split("()")[1] == str(caught_theirs.value).split("()")[1]


def _lazy_pair(**params: Any) -> tuple[Any, Any]:
    def body() -> Any:
        class Event:
            tag: str
            name: str = "NOOP"
            args: list[str] = dataclasses.field(default_factory=list)
            seen: int = dataclasses.field(default=0, compare=False, repr=False)

            def __post_init__(self) -> None:
                if not self.tag:
                    raise ValueError("tag: expected a tag")

        return Event

    return lazy_dataclass(**params)(body()), dataclasses.dataclass(**params)(body())


@pytest.mark.parametrize(
    "params",
    [
        {"frozen": True, "slots": True},
        {"slots": True},
        {"frozen": True, "slots": True, "kw_only": True},
        {"frozen": True},
        {"slots": True, "eq": False},
    ],
    ids=str,
)
def test_a_lazy_dataclass_behaves_as_the_dataclass_it_defers(params: dict[str, bool]) -> None:
    lazy, real = _lazy_pair(**params)
    assert lazy.__doc__ == real.__doc__  # written from the signature before any use
    assert lazy.__match_args__ == real.__match_args__
    assert [(f.name, f.compare, f.kw_only) for f in dataclasses.fields(lazy)] == [
        (f.name, f.compare, f.kw_only) for f in dataclasses.fields(real)
    ]
    assert hasattr(lazy, "__slots__") == hasattr(real, "__slots__")
    assert (lazy.__hash__ is None) == (real.__hash__ is None)
    if not params.get("kw_only"):
        assert repr(lazy("t", "X")) == repr(real("t", "X"))
    made = [cls(tag="t", args=["a"]) for cls in (lazy, real)]
    assert repr(made[0]) == repr(made[1])  # the first use generated dataclass's code
    assert type(made[0]).__init__.__qualname__ == type(made[1]).__init__.__qualname__
    for cls, one in zip((lazy, real), made, strict=True):
        assert (one == cls(tag="t", args=["a"], seen=5)) is params.get("eq", True)
        assert one != cls(tag="u")
        assert cls(tag="t").args is not cls(tag="t").args
        with pytest.raises(ValueError, match="expected a tag"):
            cls(tag="")
        if cls.__hash__ is not None and params.get("eq", True):
            assert hash(cls(tag="t", args=())) == hash(cls(tag="t", args=(), seen=3))
        if params.get("frozen"):
            with pytest.raises(dataclasses.FrozenInstanceError):
                one.name = "other"
            with pytest.raises(dataclasses.FrozenInstanceError):
                del one.name
        else:
            one.name = "other"
            assert one.name == "other"
        assert copy.deepcopy(one) == one or not params.get("eq", True)
        assert dataclasses.replace(one, name="X").name == "X"
    for bad in ({}, {"tag": "t", "nope": 1}):
        with pytest.raises(TypeError) as ours:
            lazy(**bad)
        with pytest.raises(TypeError) as theirs:
            real(**bad)
        assert str(ours.value) == str(theirs.value)


def test_a_lazy_dataclass_generates_its_code_once_at_first_use() -> None:
    lazy, _ = _lazy_pair(frozen=True, slots=True)
    stub = lazy.__dict__["__init__"]
    assert stub.__code__.co_name == "first_use"  # nothing compiled at definition
    lazy(tag="t")
    generated = lazy.__dict__["__init__"]
    assert generated is not stub and generated.__code__.co_name == "__init__"
    lazy(tag="u")
    assert lazy.__dict__["__init__"] is generated


def test_a_record_refuses_a_class_with_its_own_generated_method() -> None:
    with pytest.raises(TypeError, match="__repr__"):

        @record
        class Shown:
            """Its own repr."""

            a: int = 0

            def __repr__(self) -> str:
                return "mine"
