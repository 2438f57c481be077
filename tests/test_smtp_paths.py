"""The SMTP server's fast path for MAIL/RCPT addresses answers exactly as aiosmtpd's parser."""

from __future__ import annotations

from collections.abc import Callable

from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st
from mailharness.servers.smtp.session import _HarnessSMTP

# Characters that matter to the parser: atext, dots, specials, blanks, comments, quotes.
ALPHABET = 'ab.Z9_-+=@<>() \t"\\[]:,;é'
SAMPLES = [
    "<alice@example.test>",
    "<alice@example.test> SIZE=1024 BODY=8BITMIME",
    "<alice@example.test>SIZE=1",
    "<alice@example.test>   (a comment) SIZE=1",
    "<a.b+c@x-y.example>",
    "<a..b@example.test>",
    "<.a@example.test>",
    "<a@example.test.>",
    "<>",
    '<"quoted local"@example.test>',
    "<alice@[127.0.0.1]>",
    "<@route:alice@example.test>",
    " <alice@example.test>",
    "alice@example.test",
    "<alice@example.test",
    "<alicé@example.test>",
    "<alice@example.test>\t",
]


def _outcome(parse: Callable[[str], object], arg: str) -> object:
    try:
        return parse(arg)
    except Exception as error:  # the stdlib parser has its bugs ("<" alone): same ones
        return type(error)


def _both(arg: str, limit: int = 0) -> tuple[object, object]:
    ours = object.__new__(_HarnessSMTP)
    theirs = object.__new__(SMTP)
    ours.local_part_limit = theirs.local_part_limit = limit
    return _outcome(ours._getaddr, arg), _outcome(theirs._getaddr, arg)


def test_known_shapes_parse_as_aiosmtpd_does() -> None:
    for arg in SAMPLES:
        for limit in (0, 4):
            ours, theirs = _both(arg, limit)
            assert ours == theirs, arg


@settings(max_examples=400, deadline=None)
@given(
    st.text(alphabet=ALPHABET, max_size=30),
    st.sampled_from(["<", "", " <"]),
    st.sampled_from([">", "> SIZE=1", ">(c)", "", "> "]),
)
def test_any_address_parses_as_aiosmtpd_does(middle: str, head: str, tail: str) -> None:
    arg = head + middle + tail
    ours, theirs = _both(arg)
    assert ours == theirs, arg
