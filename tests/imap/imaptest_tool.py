"""Find or build Dovecot's imaptest, run it against a server, and read what it prints.

Shared by tests/imap/test_imaptest.py and bench/bench_imaptest.py, so the suite and
the benchmark run the same binary the same way.

Where the binary comes from, first match wins:
- `MAILHARNESS_IMAPTEST=/path/to/imaptest`: any build; its scripted groups are looked up
  in `src/tests` beside it (as in imaptest's own source tree) or in the directory named by
  `MAILHARNESS_IMAPTEST_TESTS`.
- `../shared/tools/imaptest` beside the repository, or beside the main checkout when this
  is a `git worktree` (source tarball, patch, build.sh):
  built once per machine into `~/.cache/mailharness/imaptest-<digest of those files>`
  (`$XDG_CACHE_HOME` honoured), under a file lock and published by one atomic rename, so
  two xdist workers (or two checkouts) never build into each other.
- Neither: `ImaptestNotApplicable`; the tests skip (a user's machine has no imaptest).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import random
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

ENV_BINARY = "MAILHARNESS_IMAPTEST"
ENV_TESTS = "MAILHARNESS_IMAPTEST_TESTS"
REPO = Path(__file__).resolve().parents[2]
#: The shared tools sit beside the repository: `../shared/tools/imaptest`.
SHARED_TOOL = Path("shared") / "tools" / "imaptest"
#: Debian's dovecot-core keeps libdovecot.so here, off the linker's default path.
DOVECOT_LIBS = Path("/usr/lib/dovecot")
#: What build.sh needs; each program with its Debian package (scripts/install-system-deps).
BUILD_PROGRAMS = {
    "autoconf": "autoconf",
    "automake": "automake",
    "libtoolize": "libtool",
    "pkg-config": "pkg-config",
    "make": "make",
    "gcc": "gcc",
    "patch": "patch",
}
BUILD_HEADERS = {Path("/usr/include/dovecot/lib.h"): "dovecot-dev"}
#: A cold build takes ~10 s on an idle 2-core machine; a loaded one is far slower.
BUILD_TIMEOUT = 900.0
#: One scripted group takes milliseconds; this only bounds a hung server.
GROUP_TIMEOUT = 60.0


class ImaptestNotApplicable(Exception):
    """No imaptest here and none to build: a user's machine, not a defect."""


class ImaptestUnavailable(Exception):
    """imaptest should be usable here but is not (a build dependency missing, a bad path)."""


@dataclass(frozen=True)
class Target:
    """The IMAP server under test: a plaintext listener that accepts LOGIN."""

    host: str
    port: int
    user: str
    password: str

    def args(self) -> list[str]:
        return [
            f"host={self.host}",
            f"port={self.port}",
            f"user={self.user}",
            f"pass={self.password}",
        ]


@dataclass(frozen=True)
class GroupResult:
    """One scripted group's outcome, from imaptest's three summary lines."""

    name: str
    required: tuple[str, ...]
    failed: bool
    base: tuple[int, int]  # (failed, run) base-protocol commands
    extensions: tuple[int, int]  # (failed, run) extension commands
    explanation: tuple[str, ...]  # imaptest's lines about what went wrong
    complete: bool  # the summary lines were printed (imaptest did not crash or hang)

    @property
    def commands(self) -> int:
        return self.base[1] + self.extensions[1]

    @property
    def errors(self) -> tuple[str, ...]:
        """imaptest's `Error:` lines: an inconsistency it saw (a keyword in FETCH never
        announced in FLAGS, a BAD) even where every scripted reply matched."""
        return tuple(line for line in self.explanation if line.startswith("Error:"))


@dataclass(frozen=True)
class StressResult:
    """Stress mode's outcome: error lines by kind, stalls, and the command totals."""

    errors: tuple[str, ...]  # every `Error:` line
    stalls: tuple[str, ...]  # " - N stalled for S secs in ..." lines
    totals: dict[str, int]  # command kind -> count over the whole run
    output: str
    returncode: int

    def error_kinds(self) -> Counter[str]:
        return Counter(error_kind(line) for line in self.errors)

    def commands_per_second(self, secs: float) -> float:
        return sum(self.totals.values()) / secs


@dataclass(frozen=True)
class Imaptest:
    binary: Path
    tests: Path | None  # directory of scripted groups, when known

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if DOVECOT_LIBS.is_dir():
            env["LD_LIBRARY_PATH"] = os.pathsep.join(
                p for p in (str(DOVECOT_LIBS), env.get("LD_LIBRARY_PATH", "")) if p
            )
        return env

    def run(
        self, args: list[str], timeout: float, *, merge: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """imaptest with `args`; stderr (its `Error:` lines) merged into stdout or apart."""
        return subprocess.run(
            [str(self.binary), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge else subprocess.PIPE,
            text=True,
            errors="replace",
            env=self.env(),
            timeout=timeout,
            check=False,
        )

    def groups(self) -> list[str]:
        """The scripted groups imaptest runs for `test=DIR`: every file but *.mbox and
        dot files (its test-parser.c), sorted as it sorts them."""
        if self.tests is None:
            return []
        return sorted(
            p.name
            for p in self.tests.iterdir()
            if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".mbox")
        )

    def run_group(self, target: Target, group: str) -> GroupResult:
        """One group on its own, so its command counts are its own: imaptest reports
        totals only, and a group whose capability is missing just adds nothing."""
        assert self.tests is not None
        path = self.tests / group
        try:
            proc = self.run([*target.args(), f"test={path}"], GROUP_TIMEOUT)
            output = proc.stdout
        except subprocess.TimeoutExpired as timeout:
            output = _text(timeout.stdout) + f"\n(imaptest timed out after {GROUP_TIMEOUT} s)"
        return parse_group(group, required_capabilities(path), output)

    def stress(self, target: Target, mbox: Path, clients: int, secs: int) -> StressResult:
        proc = self.run(
            [*target.args(), f"mbox={mbox}", f"clients={clients}", f"secs={secs}"],
            timeout=secs + 120,
            merge=False,  # stdout is block-buffered: merged, its counters could be cut apart
        )
        return parse_stress(proc.stdout, proc.stderr, proc.returncode)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")


_SUMMARY_GROUPS = re.compile(r"^(\d+) test groups: (\d+) failed", re.M)
_SUMMARY_BASE = re.compile(r"^base protocol: (\d+)/(\d+) individual commands failed", re.M)
_SUMMARY_EXT = re.compile(r"^extensions: (\d+)/(\d+) individual commands failed", re.M)


def parse_group(name: str, required: tuple[str, ...], output: str) -> GroupResult:
    groups = _SUMMARY_GROUPS.search(output)
    base = _SUMMARY_BASE.search(output)
    ext = _SUMMARY_EXT.search(output)
    complete = groups is not None and base is not None and ext is not None
    summary = (_SUMMARY_GROUPS, _SUMMARY_BASE, _SUMMARY_EXT)
    explanation = tuple(
        line
        for line in output.splitlines()
        if line.strip() and not any(pattern.match(line) for pattern in summary)
    )
    return GroupResult(
        name=name,
        required=required,
        failed=not complete or groups is None or int(groups.group(2)) > 0,
        base=(int(base.group(1)), int(base.group(2))) if base else (0, 0),
        extensions=(int(ext.group(1)), int(ext.group(2))) if ext else (0, 0),
        explanation=explanation,
        complete=complete,
    )


def required_capabilities(group_file: Path) -> tuple[str, ...]:
    """The `capabilities:` header of a group file (headers end at the first blank line)."""
    for line in group_file.read_text(errors="replace").splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        if key.strip().lower() == "capabilities":
            return tuple(value.split())
    return ()


_ERROR_KIND = re.compile(r"^Error: (?:\S+\[\d+\]: )?(?P<kind>[^:]*)")


def error_kind(line: str) -> str:
    """`Error: alice@x[3]: Keyword used without being in FLAGS: $Label2: * 1 FETCH ...`
    -> `Keyword used without being in FLAGS` (numbers folded, so kinds group)."""
    match = _ERROR_KIND.match(line)
    kind = match.group("kind") if match else line
    return re.sub(r"\d+", "N", kind.strip())[:120]


def parse_stress(stdout: str, stderr: str, returncode: int) -> StressResult:
    """Counters and stalls come on stdout, `Error:` lines (with any literal they quote,
    continued on further lines) on stderr."""
    lines = stdout.splitlines()
    totals: dict[str, int] = {}
    if "Totals:" in lines:
        # "Totals:", the command names, their probabilities (one or two lines), the counts.
        at = len(lines) - 1 - lines[::-1].index("Totals:")
        names = lines[at + 1].split() if at + 1 < len(lines) else []
        for line in lines[at + 2 :]:
            counts = line.split()
            if len(counts) == len(names) and all(c.isdigit() for c in counts):
                totals = dict(zip(names, map(int, counts), strict=True))
                break
    return StressResult(
        errors=tuple(line for line in stderr.splitlines() if line.startswith("Error:")),
        stalls=tuple(line for line in lines if re.match(r"^ - \d+ stalled for", line)),
        totals=totals,
        output=stdout + stderr[-4000:],
        returncode=returncode,
    )


# --- the stress mailbox ---------------------------------------------------------------------

#: Enough messages that every client finds work; small enough to append in a blink.
STRESS_MESSAGES = 60
_NAMES = ("Ana Lima", "Jörg Müller", "Zoë Ødegård", "李雷", "Ahmed Ali", "Sam O'Neil")
_ASCII_WORDS = ("alpha", "beta", "gamma", "delta", "invoice", "meeting", "report", "draft")
_WORDS = (*_ASCII_WORDS, "naïve", "café", "über", "straße")


def stress_mbox(count: int = STRESS_MESSAGES, seed: int = 8) -> bytes:
    """A deterministic mbox of the kinds of mail a connector meets: plain 7-bit text,
    quoted-printable and 8-bit UTF-8 bodies, multipart/alternative, attachments in base64
    (with RFC 2231 file names), a forwarded message/rfc822, nested multipart/related,
    threads linked by References/In-Reply-To, RFC 2047 and raw UTF-8 headers, group
    addresses. The same bytes on every run and machine (fixed dates, ids, boundaries)."""
    rng = random.Random(seed)
    out = bytearray()
    threads: list[list[str]] = []
    for i in range(count):
        message = _stress_message(i, rng, threads)
        for n, part in enumerate(message.walk()):
            if part.get_content_maintype() == "multipart":
                part.set_boundary(f"=_mh_{i}_{n}_=")
        raw = _serialise(message)
        out += b"From sender@example.test  Mon Jan  1 00:00:00 2024\n" + raw
        if not raw.endswith(b"\n"):
            out += b"\n"
        out += b"\n"
    return bytes(out)


def _serialise(message: EmailMessage) -> bytes:
    buffer = io.BytesIO()
    # mangle_from_: a body line starting "From " would otherwise split the message.
    BytesGenerator(buffer, mangle_from_=True, policy=message.policy.clone(linesep="\n")).flatten(
        message
    )
    return buffer.getvalue()


def _text(rng: random.Random, words: int, vocabulary: tuple[str, ...] = _WORDS) -> str:
    lines, line = [], []
    for _ in range(words):
        line.append(rng.choice(vocabulary))
        if len(line) == 12:
            lines.append(" ".join(line))
            line = []
    lines.append(" ".join(line))
    return "\n".join(lines) + "\n"


def _stress_message(i: int, rng: random.Random, threads: list[list[str]]) -> EmailMessage:
    kind = i % 8
    raw_utf8 = kind == 6
    message = EmailMessage(policy=policy.default.clone(utf8=True) if raw_utf8 else policy.default)
    sender = _NAMES[i % len(_NAMES)]
    message["From"] = f"{sender} <user{i % 7}@example.test>"
    message["To"] = (
        "undisclosed-recipients:;"
        if i % 9 == 4
        else f"{_NAMES[(i + 1) % 6]} <to{i % 5}@example.org>"
    )
    if i % 3 == 0:
        message["Cc"] = ", ".join(f"cc{n}@example.net" for n in range(i % 4 + 1))
    message["Date"] = format_datetime(
        datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=7 * i, minutes=i)
    )
    message_id = f"<m{i}.{seed_tag(i)}@example.test>"
    message["Message-ID"] = message_id
    subject = f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} #{i % 11}"
    if kind == 5 and threads:
        # A reply: the thread's subject with "Re:", linked by In-Reply-To and References.
        thread = threads[rng.randrange(len(threads))]
        message["Subject"] = f"Re: {thread[0]}"
        message["In-Reply-To"] = thread[-1]
        message["References"] = " ".join(thread[1:])
        thread.append(message_id)
    else:
        message["Subject"] = subject if kind != 1 else f"Grüße: {subject} — ✓"
        threads.append([message["Subject"], message_id])
    body = _text(rng, 20 + rng.randrange(200), _ASCII_WORDS if kind == 0 else _WORDS)
    if kind == 0:
        message.set_content(body, cte="7bit")
    elif kind == 1:
        message.set_content("Grüße aus Köln — naïve café\n" + body, cte="quoted-printable")
    elif kind == 2:
        message.set_content(body, cte="quoted-printable")
        message.add_alternative(f"<html><body><p>{body}</p></body></html>\n", subtype="html")
    elif kind == 3:
        message.set_content(body)
        blob = bytes(rng.randrange(256) for _ in range(1000 + rng.randrange(20000)))
        message.add_attachment(
            blob, maintype="application", subtype="pdf", filename=f"Rechnung-Ü{i}.pdf"
        )
    elif kind == 4:
        inner = EmailMessage()
        inner["From"] = "forwarded@example.com"
        inner["Subject"] = f"original {i}"
        inner["Date"] = message["Date"]
        inner.set_content(_text(rng, 30))
        message.set_content("see below\n")
        message.add_attachment(inner)
    elif kind == 5:
        message.set_content("> quoted\n" + body, cte="8bit")
    elif kind == 6:
        message.set_content("Ünïcödé body in 8-bit UTF-8\n" + body, cte="8bit")
    else:
        message.set_content(body)
        message.add_alternative(
            f"<html><body>{body}<img src=cid:img{i}></body></html>\n", subtype="html"
        )
        html = message.get_payload()[1]
        image = bytes(rng.randrange(256) for _ in range(500))
        html.add_related(image, maintype="image", subtype="png", cid=f"<img{i}>")
    return message


def seed_tag(i: int) -> str:
    return hashlib.sha256(f"mailharness-stress-{i}".encode()).hexdigest()[:10]


# --- finding or building the binary -------------------------------------------------------


def locate() -> Imaptest:
    """The imaptest to use here; see the module docstring for the order."""
    named = os.environ.get(ENV_BINARY)
    if named:
        binary = Path(named).expanduser()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise ImaptestUnavailable(f"{ENV_BINARY}={named} is not an executable file")
        tests_env = os.environ.get(ENV_TESTS)
        tests = Path(tests_env).expanduser() if tests_env else binary.parent / "tests"
        return Imaptest(binary, tests if tests.is_dir() else None)
    for root in repository_roots():
        source = root.parent / SHARED_TOOL
        if (source / "build.sh").is_file():
            return build(source)
    raise ImaptestNotApplicable(
        f"not applicable: no ../{SHARED_TOOL} beside the repository and {ENV_BINARY} is not "
        "set (set it to an imaptest binary to run these tests)"
    )


def repository_roots() -> list[Path]:
    """This checkout and, when it is a `git worktree`, the main checkout, whose parent
    holds ../shared (a worktree may live anywhere)."""
    roots = [REPO]
    try:
        common = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--path-format=absolute", "--git-common-dir"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return roots
    main = Path(common).parent
    return roots if main == REPO else [*roots, main]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mailharness"


def source_digest(source: Path) -> str:
    """Of every file build.sh uses, so a new tarball or patch builds afresh."""
    digest = hashlib.sha256()
    for path in sorted(p for p in source.iterdir() if p.is_file() and p.name != "README.md"):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def missing_build_dependencies() -> list[str]:
    missing = {pkg for prog, pkg in BUILD_PROGRAMS.items() if shutil.which(prog) is None}
    missing |= {pkg for path, pkg in BUILD_HEADERS.items() if not path.exists()}
    return sorted(missing)


def build(source: Path) -> Imaptest:
    final = cache_root() / f"imaptest-{source_digest(source)}"
    built = Imaptest(final / "src" / "imaptest", final / "src" / "tests")
    if built.binary.is_file():
        return built
    missing = missing_build_dependencies()
    if missing:
        raise ImaptestUnavailable(
            f"cannot build imaptest: missing Debian packages {' '.join(missing)} "
            "(scripts/install-system-deps installs them)"
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    with _locked(final.parent / f"{final.name}.lock"):
        if built.binary.is_file():  # another worker built it while we waited
            return built
        scratch = Path(tempfile.mkdtemp(prefix=f"{final.name}.", dir=final.parent))
        try:
            proc = subprocess.run(
                ["bash", str(source / "build.sh"), str(scratch / "imaptest")],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
            if proc.returncode != 0 or not (scratch / "imaptest/src/imaptest").is_file():
                raise ImaptestUnavailable(
                    f"building imaptest with {source}/build.sh failed (exit {proc.returncode}):\n"
                    + (proc.stdout + proc.stderr)[-2000:]
                )
            os.rename(scratch / "imaptest", final)  # atomic: readers see all or nothing
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return built


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` for the with-block (the kernel drops it if we die)."""
    with path.open("a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)
