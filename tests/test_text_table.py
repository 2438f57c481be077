"""`@text_table` acts as `@dataclass(frozen=True, slots=True, kw_only=True)` does (issue 13:
it only skips the generated code that made the IMAP reply table cost ~9 ms per start)."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
from mailharness.servers.imap.replies import DOVECOT, GMAIL, Replies, Reply
from mailharness.servers.text_table import text_table


@text_table
class Table:
    greeting: str = "hello"
    code: Reply | None = None
    lines: tuple[str, ...] = ("a", "b")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Table2:
    greeting: str = "hello"
    code: Reply | None = None
    lines: tuple[str, ...] = ("a", "b")


def test_a_text_table_behaves_as_the_generated_dataclass() -> None:
    ours, theirs = Table(code=Reply("X", "y")), Table2(code=Reply("X", "y"))
    assert repr(ours) == repr(theirs).replace("Table2", "Table")
    assert dataclasses.asdict(ours) == dataclasses.asdict(theirs)
    assert [f.name for f in dataclasses.fields(ours)] == ["greeting", "code", "lines"]
    assert ours == Table(code=Reply("X", "y")) and hash(ours) == hash(Table(code=Reply("X", "y")))
    assert ours != Table() and ours != theirs
    assert dataclasses.replace(ours, greeting="hi").greeting == "hi"
    assert dataclasses.replace(ours, greeting="hi").code == ours.code
    assert Table(code=None).code is None
    assert copy.deepcopy(ours) == ours and pickle.loads(pickle.dumps(ours)) == ours
    assert not hasattr(ours, "__dict__")  # slotted
    with pytest.raises(dataclasses.FrozenInstanceError):
        ours.greeting = "changed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del ours.greeting  # type: ignore[misc]
    for bad in (lambda: Table("hi"), lambda: Table(nope=1)):  # type: ignore[call-arg, misc]
        with pytest.raises(TypeError):
            bad()


def test_the_reply_tables_are_text_tables() -> None:
    assert dataclasses.replace(DOVECOT) == DOVECOT and DOVECOT != GMAIL
    assert dataclasses.replace(GMAIL, greeting=DOVECOT.greeting).greeting == "Dovecot ready."
    assert Replies() == DOVECOT


def test_a_text_table_refuses_fields_it_cannot_make() -> None:
    with pytest.raises(TypeError, match="plain defaults"):

        @text_table
        class NoDefault:
            greeting: str
            other: str = ""
