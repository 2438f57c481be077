"""Messages and commands that exercise SORT, THREAD and address SEARCH (RFC 5256, 5957, 5267).

The same corpus is appended to our fake server and to a native Dovecot, and every
command's untagged replies must agree (tests/dovecot/test_ordering_differential.py);
the wire tests in tests/imap/test_ordering.py pin a few of the answers.
"""

from __future__ import annotations

import imaplib
import random
from datetime import UTC, datetime, timedelta

#: (internal date, header lines); each message gets a short body after them.
Message = tuple[datetime, str]

_BASE = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


def _at(minutes: int) -> datetime:
    return _BASE + timedelta(minutes=minutes)


CORPUS: list[Message] = [
    # Subjects: RFC 5256 §2.1 leaders, trailers, blobs, [fwd: ...], case and spacing.
    (_at(5), "Subject: Re: lunch\nFrom: Zed <zed@example.test>\nTo: alice@example.test"),
    (_at(1), "Subject: lunch\nFrom: amy@example.test\nTo: Bob Brown <bob@example.test>"),
    (_at(9), 'Subject: [team] RE: Lunch (fwd)\nFrom: "Cy, Jr." <cy@example.test>'),
    (_at(3), "Subject: Fwd: [fwd: lunch]\nFrom: <dan@example.test>\nCc: undisclosed:;"),
    (_at(2), "Subject: re [x]:  lunch  \nFrom: eve@example.test (Eve Ever)"),
    (_at(4), "Subject: [only a blob]\nFrom: =?utf-8?q?=C3=89mile?= <emile@example.test>"),
    (_at(7), "Subject: FW:FWD: Re: report\nTo: team: x@example.test, y@example.test;"),
    (_at(8), "Subject: report (FWD) (fwd)\nTo: =?iso-8859-1?q?=C4rger?= <ae@example.test>"),
    (_at(6), "Subject: =?utf-8?q?=C3=A9t=C3=A9?=\nTo: d\nCc: carl@example.test"),
    (_at(0), "Subject: Été\nTo: <>\nCc: Bea <bea@example.test>, al@example.test"),
    (_at(10), 'Subject:\tReport\n\tcontinued\nFrom: "" <blank@example.test>'),
    (_at(11), 'From: nosubject@example.test\nTo: "Quoted \\"Name\\"" <q@example.test>'),
    # Dates: a Date header in several zones, an invalid one, none (arrival then).
    (_at(12), "Subject: d1\nDate: Fri, 1 Mar 2024 13:30:00 +0200"),
    (_at(13), "Subject: d2\nDate: Fri, 01 Mar 2024 11:00:00 -0000"),
    (_at(14), "Subject: d3\nDate: not a date at all"),
    (_at(15), "Subject: d4\nDate: 1 Mar 2024 11:00:00 GMT"),
    # Threads: a chain, a reply to a missing parent (a dummy), siblings, a loop,
    # a duplicate Message-ID, In-Reply-To only, and subject-only relatives.
    (_at(20), "Subject: plan\nMessage-ID: <p1@x>"),
    (_at(22), "Subject: Re: plan\nMessage-ID: <p2@x>\nReferences: <p1@x>"),
    (_at(21), "Subject: Re: plan\nMessage-ID: <p3@x>\nReferences: <p1@x> <p2@x>"),
    (_at(23), "Subject: Re: plan\nMessage-ID: <p4@x>\nIn-Reply-To: <p1@x>"),
    (_at(24), "Subject: ghost\nMessage-ID: <g2@x>\nReferences: <gone@x>"),
    (_at(25), "Subject: Re: ghost\nMessage-ID: <g3@x>\nReferences: <gone@x>"),
    (_at(26), "Subject: loop a\nMessage-ID: <la@x>\nReferences: <lb@x>"),
    (_at(27), "Subject: loop b\nMessage-ID: <lb@x>\nReferences: <la@x>"),
    (_at(28), "Subject: dup\nMessage-ID: <dup@x>"),
    (_at(29), "Subject: dup again\nMessage-ID: <dup@x>"),
    (_at(30), "Subject: Re: dup\nMessage-ID: <dup2@x>\nReferences: <dup@x>"),
    (_at(31), "Subject: plan\nMessage-ID: <p5@x>"),
    (_at(32), "Subject: Fwd: plan\nMessage-ID: <p6@x>"),
    (_at(19), "Subject: orphans\nReferences: <o0@x> <o1@x>"),
    (_at(18), "Subject: orphans\nReferences: <o0@x> <o2@x>"),
    # A Date header here: with two "ghost" replies both falling back to the arrival date,
    # native Dovecot once ranked them the other way round (1 run in about 10).
    (_at(33), "Subject: Re: ghost\nMessage-ID: <g4@x>\nDate: Fri, 1 Mar 2024 12:33:00 +0000"),
    (_at(34), "Subject: self\nMessage-ID: <self@x>\nReferences: <self@x>"),
    (_at(35), "Subject: bad ids\nMessage-ID: no-angle@x\nReferences: <no-at> <(c)ok@x>"),
    # Addresses Dovecot parses its own way: fills, routes, comments, stray text.
    (_at(36), "From: <@>\nTo: <>, nodomain, @nolocal.test\nCc: a@b (c) (d)"),
    (_at(37), 'From: "q" a@b\nTo: a b c\nCc: g: a@b, (c) d <e@f>;, h@i'),
    (_at(38), "From: <@r1,@r2:u@d>\nTo: a.@b, .c@d, e..f@g\nCc: ,a@b"),
    (_at(39), 'From: x <>, b@c\nTo: "" <a@b>\nCc: a@b,'),
    # i;unicode-casemap: simple titlecase, canonical decomposition only.
    (_at(40), "Subject: Stra\u00dfe\nContent-Type: text/plain; charset=utf-8"),
    (_at(41), "Subject: caf\u00e9 \u01c6emal\nContent-Type: text/plain; charset=utf-8"),
    (_at(42), "Subject: \ufb01ne \u03a3\u0391\u03a3 \u03c3\u03b1\u03c2\nContent-Type: text/plain"),
    (_at(43), "Subject: \u01c4 stra\u00dfe\nContent-Type: text/plain; charset=utf-8"),
]


def _literal(text: str) -> str:
    """A LITERAL+ argument, for 8-bit search strings."""
    return f"{{{len(text.encode())}+}}\r\n{text}"


#: Commands whose untagged replies must be the same on our server and on Dovecot.
COMMANDS: list[str] = (
    [
        f"{uid}SORT ({program}) UTF-8 ALL"
        for uid in ("", "UID ")
        for program in (
            "SUBJECT",
            "REVERSE SUBJECT",
            "FROM",
            "TO",
            "CC",
            "REVERSE CC",
            "DISPLAYFROM",
            "DISPLAYTO",
            "REVERSE DISPLAYTO",
            "DATE",
            "REVERSE DATE",
            "ARRIVAL",
            "SIZE",
            "SUBJECT REVERSE DATE",
            "REVERSE REVERSE FROM SIZE",
            "CC DISPLAYFROM ARRIVAL",
        )
    ]
    + [
        "SORT (SUBJECT) UTF-8 SUBJECT plan",
        "SORT (DATE) US-ASCII NOT SUBJECT plan",
        "SORT RETURN (MIN MAX COUNT) (SUBJECT) UTF-8 ALL",
        "SORT RETURN () (REVERSE ARRIVAL) UTF-8 ALL",
        "SORT RETURN (ALL) (SUBJECT) UTF-8 1:10",
        "SORT RETURN (PARTIAL 3:7) (REVERSE DATE) UTF-8 ALL",
        "UID SORT RETURN (PARTIAL 7:3 COUNT) (FROM) UTF-8 ALL",
        "SORT RETURN (COUNT MIN) (SIZE) UTF-8 SUBJECT nothing-matches",
        "THREAD REFERENCES UTF-8 ALL",
        "UID THREAD REFERENCES UTF-8 ALL",
        "THREAD REFERENCES UTF-8 SUBJECT plan",
        "THREAD REFERENCES UTF-8 NOT SUBJECT plan",
        "THREAD REFS UTF-8 ALL",
        "UID THREAD REFS UTF-8 ALL",
        "THREAD ORDEREDSUBJECT UTF-8 ALL",
        "UID THREAD ORDEREDSUBJECT UTF-8 ALL",
        "SEARCH FROM eve",
        'SEARCH FROM "Eve Ever"',
        'SEARCH FROM "<dan@"',
        "SEARCH TO team",
        'SEARCH TO "team: "',
        "SEARCH TO x@example.test",
        "SEARCH CC undisclosed",
        'SEARCH TO "bob brown"',
        'SEARCH FROM "cy, jr"',
        "SEARCH FROM emile",
        "SEARCH CHARSET UTF-8 TO " + _literal("Ärger"),
        "SORT (DISPLAYTO) UTF-8 TO " + _literal("Ärger"),
        "SORT (SUBJECT) UTF-8 39:*",
        "SORT (REVERSE SUBJECT) UTF-8 39:*",
    ]
    + [
        "SEARCH CHARSET UTF-8 SUBJECT " + _literal(needle)
        for needle in (
            "strasse",
            "STRASSE",
            "\u00df",
            "cafe",
            "CAF\u00c9",
            "fine",
            "\ufb01",
            "\u01c5",
            "\u03c3\u03b1\u03c3",
            "\u03a3\u0391\u03c2",
        )
    ]
    + [
        "SEARCH CHARSET UTF-8 BODY " + _literal("X" * 3),
        "FETCH 35:38 (ENVELOPE)",
        'SEARCH CC "bea <"',
        "SEARCH TO missing_domain",
    ]
)


#: Commands run over each random corpus.
THREAD_COMMANDS = [
    "THREAD REFERENCES UTF-8 ALL",
    "THREAD REFS UTF-8 ALL",
    "THREAD ORDEREDSUBJECT UTF-8 ALL",
    "SORT (SUBJECT DATE) UTF-8 ALL",
    "THREAD REFERENCES UTF-8 NOT SUBJECT lunch",
]
_SUBJECTS = (
    "plan",
    "Re: plan",
    "Fwd: plan",
    "Re: Re: plan",
    "lunch",
    "Re: lunch",
    "[x] lunch",
    "report",
    "Re: [y] report (fwd)",
    "",
)


def random_corpus(seed: int, count: int) -> list[Message]:
    """Messages whose References, In-Reply-To, Message-IDs (some repeated or missing),
    subjects and dates are drawn at random: threads with loops, dummies and merges."""
    rng = random.Random(seed)
    ids = [f"<m{i}@x>" for i in range(count + 10)]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    out: list[Message] = []
    for i in range(count):
        lines = []
        if rng.random() < 0.85:
            own = rng.choice(ids[: count + 3]) if rng.random() < 0.1 else ids[i]
            lines.append(f"Message-ID: {own}")
        draw = rng.random()
        if draw < 0.5:
            lines.append("References: " + " ".join(rng.sample(ids, rng.randint(1, 4))))
        elif draw < 0.65:
            lines.append("In-Reply-To: " + rng.choice(ids))
        subject = rng.choice(_SUBJECTS)
        if subject or rng.random() < 0.5:
            lines.append(f"Subject: {subject}")
        if rng.random() < 0.7:
            sent = start + timedelta(minutes=rng.randint(0, 30))
            lines.append(sent.strftime("Date: %a, %d %b %Y %H:%M:%S +0000"))
        out.append((start + timedelta(minutes=rng.randint(0, 30)), "\n".join(lines)))
    return out


#: Pieces of random address fields: names, quoting, comments, routes, groups, stray marks.
_ADDRESS_PIECES = (
    "a", "bob", "Zed", "x.y", "@", "<", ">", ",", ";", ":", " ", "\t", '"q r"', '"a\\"b"',
    "(c)", "(n (m))", "[1.2.3.4]", ".", "d.org", "=?utf-8?q?=C3=89mi?=", "grp:", "<a@b>", "u@h",
)  # fmt: skip
#: Commands run over each random address corpus.
ADDRESS_COMMANDS = [f"SORT ({key}) UTF-8 ALL" for key in ("FROM", "TO", "CC")] + [
    "SORT (DISPLAYFROM) UTF-8 ALL",
    "SORT (DISPLAYTO) UTF-8 ALL",
] + [
    f"SEARCH {field} {needle}"
    for field in ("FROM", "TO", "CC")
    for needle in ("a", "missing", '"@"', '"<"', '","', '";"', "q", "syntax", '": "')
]  # fmt: skip


def random_addresses(seed: int, count: int) -> list[Message]:
    """Messages whose From, To and Cc are random runs of address pieces."""
    rng = random.Random(seed)

    def field() -> str:
        return "".join(rng.choice(_ADDRESS_PIECES) for _ in range(rng.randint(1, 9)))

    when = datetime(2024, 1, 1, tzinfo=UTC)
    return [(when, f"From: {field()}\nTo: {field()}\nCc: {field()}") for _ in range(count)]


def message_bytes(headers: str, number: int) -> bytes:
    """The message: its header lines, CRLF-terminated, then a body of growing size."""
    lines = headers.split("\n")
    body = f"body {number}\r\n" + "x" * (number * 7 % 50) + "\r\n"
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8")


def append_corpus(
    client: imaplib.IMAP4, mailbox: str = "INBOX", corpus: list[Message] = CORPUS
) -> None:
    for number, (when, headers) in enumerate(corpus, start=1):
        typ, data = client.append(
            mailbox, "", imaplib.Time2Internaldate(when), message_bytes(headers, number)
        )
        assert typ == "OK", data


def untagged(client: imaplib.IMAP4, command: str) -> list[bytes]:
    """The untagged replies to ``command`` (and its tagged status), as raw lines."""
    tag = client._new_tag()  # type: ignore[attr-defined]
    client.send(tag + b" " + command.encode("utf-8") + b"\r\n")
    lines: list[bytes] = []
    while True:
        line = client.readline()
        if line.startswith(tag + b" "):
            lines.append(line.split(b" ", 2)[1])  # OK / NO / BAD
            return lines
        if line.startswith(b"* ESEARCH (TAG "):
            line = b"* ESEARCH (TAG X)" + line.split(b")", 1)[1]
        lines.append(line.rstrip(b"\r\n"))
