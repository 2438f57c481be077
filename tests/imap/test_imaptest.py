"""IMAP conformance at Dovecot's level, checked by Dovecot's own tester, imaptest (issue 8).

- Scripted mode: every group of imaptest's `src/tests` against the fake, each group run on
  its own so its command counts are its own. A group fails the test when any of its
  commands failed or imaptest printed an `Error:` line for it, and also when it ran no
  command at all: imaptest silently skips a group whose capability the server does not
  advertise (its "skipped" counter always prints 0), and a skipped group proves nothing.
  Only the groups native Dovecot 2.3 cannot run either are exempt
  (`DOVECOT_RUNS_NO_COMMAND`).
- Stress mode: 10 and 50 clients on one mailbox, appending a generated mbox of varied mail,
  cross-checking every reply against what the other clients saw; any `Error:` line, stall or
  error recorded by the server fails.
- Capabilities: after login the fake advertises at least what native Dovecot does.

imaptest comes from `MAILHARNESS_IMAPTEST` (any build) or is built once per machine from
`../shared/tools/imaptest` (see tests/imap/imaptest_tool.py); with neither, the imaptest
tests skip as "not applicable". `MAILHARNESS_IMAPTEST_SECS` sets the stress duration.
"""

from __future__ import annotations

import imaplib
import os
from collections.abc import Callable, Iterator
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from mailharness.catalog import CATALOG
from mailharness.certs import MailCA
from mailharness.server import MailServer

from tests.helpers import in_ci, require_backend
from tests.imap.imaptest_tool import (
    Imaptest,
    ImaptestNotApplicable,
    ImaptestUnavailable,
    StressResult,
    Target,
    error_kind,
    locate,
    parse_group,
    parse_stress,
    stress_mbox,
)

#: Groups that run no command against native Dovecot 2.3.19 either (measured per group
#: against `serve_backend.py plaintext-only dovecot`), so "ran nothing" is not held against
#: the fake for these; if they do run, they must pass like any other.
DOVECOT_RUNS_NO_COMMAND = {
    # CONTEXT=SORT (RFC 5267's SORT half): Dovecot 2.3 advertises CONTEXT=SEARCH only.
    "sort-partial": "needs CONTEXT=SORT, which Dovecot 2.3 does not advertise",
    # URLAUTH (RFC 4467): Dovecot advertises it only with imap_urlauth_host configured
    # (and an imap-urlauth service), which its default configuration does not have.
    "urlauth": "needs URLAUTH, advertised by Dovecot only with imap_urlauth_host set",
    "urlauth-binary": "needs URLAUTH and URLAUTH=BINARY (as urlauth)",
    "urlauth2": "needs URLAUTH (as urlauth) and a second user (imaptest's user2=)",
}
#: Seconds per stress run: long enough for thousands of commands from every client.
STRESS_SECS = int(os.environ.get("MAILHARNESS_IMAPTEST_SECS", "10"))
#: Lines of imaptest's explanation shown per failed group, and examples per error kind.
EXPLANATION_LINES = 40
EXAMPLES_PER_KIND = 2


@pytest.fixture(scope="module")
def imaptest() -> Imaptest:
    """The imaptest binary; skipped where there is none (failed in CI, unless not applicable)."""
    try:
        return locate()
    except ImaptestNotApplicable as error:
        pytest.skip(str(error))
    except ImaptestUnavailable as error:
        if in_ci():
            pytest.fail(str(error), pytrace=False)
        pytest.skip(str(error))


#: The fake, and native Dovecot as the reference: what the fake must match, and the proof
#: that these tests (the groups, the exemptions, the generated mbox) fail only on a real
#: difference. Dovecot is held to the same verdicts.
BACKENDS = ["fake", "dovecot"]


@pytest.fixture
def server(request: pytest.FixtureRequest, mail_ca: MailCA) -> Iterator[MailServer]:
    """A plaintext listener that allows LOGIN, as imaptest speaks, on the backend asked for."""
    backend = getattr(request, "param", "fake")
    if backend != "fake":
        require_backend(backend)
    served = CATALOG["plaintext-only"].serve(ca=mail_ca, backend=backend)
    try:
        yield served
    finally:
        served.stop()


def target(server: MailServer) -> Target:
    endpoint = server.imap.none
    user = server.config.users[0]
    return Target(endpoint.host, endpoint.port, user.login or user.address, user.password)


@pytest.mark.parametrize("server", BACKENDS, indirect=True)
def test_scripted_mode_passes_every_group(
    imaptest: Imaptest, server: MailServer, record_property: Callable[[str, object], None]
) -> None:
    groups = imaptest.groups()
    if not groups:
        pytest.fail(f"no scripted groups found beside {imaptest.binary}", pytrace=False)
    results = [imaptest.run_group(target(server), group) for group in groups]
    server.stop()  # settles every session before its errors are read

    # A group that passed its scripted checks still fails on an `Error:` line (Dovecot
    # prints none in any group).
    failed = [r for r in results if r.failed or r.errors]
    idle = [r for r in results if r.commands == 0 and r.name not in DOVECOT_RUNS_NO_COMMAND]
    report = [
        f"imaptest scripted mode against {server.config.backend}: {len(failed)} of "
        f"{len(results)} groups failed, {len(idle)} ran no command (besides the "
        f"{len(DOVECOT_RUNS_NO_COMMAND)} that Dovecot cannot run either)",
    ]
    record_property(SUMMARY, report[0])
    if failed:
        report.append("failed groups, with imaptest's explanation:")
        for r in failed:
            base, ext = r.base, r.extensions
            report.append(
                f"  {r.name}: base {base[0]}/{base[1]} failed, extensions {ext[0]}/{ext[1]} failed"
                + (f", {len(r.errors)} Error: lines" if r.errors else "")
                + ("" if r.complete else " (imaptest printed no summary: crashed or hung)")
            )
            lines = r.explanation[:EXPLANATION_LINES]
            report += [f"      {line}" for line in lines]
            if len(r.explanation) > len(lines):
                report.append(f"      ... {len(r.explanation) - len(lines)} more lines")
    if idle:
        report.append("groups that ran no command (a capability they need is not advertised):")
        report += [f"  {r.name}: requires {' '.join(r.required) or '(nothing)'}" for r in idle]
    if server.config.backend != "fake":
        # The reference keeps the exemptions honest: exactly these run nothing on Dovecot.
        exempt_ran = sorted(
            r.name for r in results if r.name in DOVECOT_RUNS_NO_COMMAND and r.commands
        )
        if exempt_ran:
            idle.extend(r for r in results if r.name in exempt_ran)
            report.append(f"exempt from running, yet ran on Dovecot: {' '.join(exempt_ran)}")
    faults = harness_faults(server)
    if faults:
        report.append("faults of the server itself (recorded errors):")
        report += [f"  {e}" for e in faults]
    if failed or idle or faults:
        pytest.fail("\n".join(report), pytrace=False)


@pytest.mark.parametrize(
    ("server", "clients"),
    [("fake", 10), ("fake", 50), ("dovecot", 10)],
    indirect=["server"],
    ids=["fake-10", "fake-50", "dovecot-10"],
)
def test_stress_mode_finds_no_inconsistency(
    imaptest: Imaptest,
    server: MailServer,
    clients: int,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    mbox = tmp_path / "stress.mbox"
    mbox.write_bytes(stress_mbox())
    result = imaptest.stress(target(server), mbox, clients=clients, secs=STRESS_SECS)
    server.stop()
    # Stress mode sends only valid commands: every recorded error counts, BADs included.
    problems = stress_problems(result, [*recorded_errors(server), *server.client_errors])
    record_property(
        SUMMARY,
        f"imaptest stress mode against {server.config.backend}, {clients} clients, "
        f"{STRESS_SECS} s: {len(result.errors)} Error: lines, "
        f"{result.commands_per_second(STRESS_SECS):,.0f} commands/s",
    )
    if problems:
        heading = f"imaptest stress mode, {server.config.backend}, {clients} clients, "
        heading += f"{STRESS_SECS} s ({result.commands_per_second(STRESS_SECS):,.0f} commands/s):"
        pytest.fail("\n".join([heading, *problems]), pytrace=False)


#: What the server records about a client's mistakes (a BAD reply, an unparsable line). Some
#: groups send bad commands on purpose (listext, search-partial) and judge the reply
#: themselves, so in scripted mode only the server's own faults count.
CLIENT_MISTAKES = ("client error:", "client protocol error:")
#: The user property whose value tests/conftest.py prints at the end of the run.
SUMMARY = "mailharness_summary"


def recorded_errors(server: MailServer) -> list[str]:
    return [*server.errors, *(f"mail store: {e!r}" for e in server.store.errors)]


def harness_faults(server: MailServer) -> list[str]:
    return [e for e in recorded_errors(server) if not e.startswith(CLIENT_MISTAKES)]


def stress_problems(result: StressResult, server_errors: list[str]) -> list[str]:
    problems: list[str] = []
    if result.errors:
        problems.append(f"{len(result.errors)} Error: lines, by kind:")
        for kind, count in result.error_kinds().most_common():
            problems.append(f"  {count:7d}  {kind}")
            examples = [e for e in result.errors if error_kind(e) == kind][:EXAMPLES_PER_KIND]
            problems += [f"             e.g. {e[:300]}" for e in examples]
    if result.stalls:
        problems.append(f"{len(result.stalls)} stalled clients:")
        problems += [f"  {line}" for line in result.stalls[:10]]
    if server_errors:
        problems.append(f"{len(server_errors)} errors the server recorded:")
        problems += [f"  {e}" for e in server_errors[:20]]
    if result.returncode != 0 or not result.totals.get("Logi"):
        problems.append(
            f"imaptest exited {result.returncode} with totals {result.totals or 'missing'}; "
            "its output ended:\n" + result.output[-2000:]
        )
    return problems


def capabilities_after_login(server: MailServer) -> set[str]:
    t = target(server)
    with imaplib.IMAP4(t.host, t.port, timeout=30) as client:
        client.login(t.user, t.password)
        status, data = client.capability()
        assert status == "OK", data
        return {c.upper() for c in data[0].decode().split()}


def test_fake_advertises_every_capability_dovecot_does(mail_ca: MailCA) -> None:
    """A connector that relies on a Dovecot capability must find it on the fake too."""
    require_backend("dovecot")
    scenario = CATALOG["plaintext-only"]
    dovecot = scenario.serve(ca=mail_ca, backend="dovecot")
    try:
        theirs = capabilities_after_login(dovecot)
    finally:
        dovecot.stop()
    ours_server = scenario.serve(ca=mail_ca)
    try:
        ours = capabilities_after_login(ours_server)
    finally:
        ours_server.stop()
    missing = sorted(theirs - ours)
    if missing:
        pytest.fail(
            f"the fake lacks {len(missing)} of Dovecot's capabilities after login: "
            + " ".join(missing),
            pytrace=False,
        )


# --- the reading of imaptest's output, and the generated mbox (no imaptest needed) ----------

GROUP_OUTPUT = """\
Error: a@example.test[1]: Keyword used without being in FLAGS: $hello: * 1 FETCH (FLAGS ($hello))
*** Test search-flags command 18/47 (line 39)
 - failed: Missing 1 untagged replies (1 mismatches)
 - Command: search new

1 test groups: 1 failed, 0 skipped due to missing capabilities
base protocol: 3/47 individual commands failed
extensions: 0/0 individual commands failed
"""

STRESS_STDOUT = """\
Logi List Stat Sele Fetc Fet2 Stor Dele Expu Appe Logo
100%  50%  50% 100% 100% 100%  50% 100% 100% 100% 100%
                          30%                  5%
 741  363  351  741  105  668  227  364  676  481  709  36/ 50
 - 7 stalled for 16 secs in LOGIN

Totals:
Logi List Stat Sele Fetc Fet2 Stor Dele Expu Appe Logo
100%  50%  50% 100% 100% 100%  50% 100% 100% 100% 100%
                          30%                  5%
3932 1952 1927 3932  547 3408 1452 2224 3847 2859 3947
"""


def test_a_group_is_read_from_imaptests_summary() -> None:
    result = parse_group("search-flags", ("X",), GROUP_OUTPUT)
    assert result.failed and result.complete
    assert (result.base, result.extensions, result.commands) == ((3, 47), (0, 0), 47)
    assert len(result.errors) == 1 and result.explanation[1].startswith("*** Test search-flags")
    assert not any("test groups" in line for line in result.explanation)


def test_a_group_without_summary_counts_as_failed_and_idle() -> None:
    result = parse_group("thread", (), "Error: connect(127.0.0.1) failed: Connection refused\n")
    assert result.failed and not result.complete and result.commands == 0


def test_a_group_that_ran_nothing_is_not_failed_by_imaptest() -> None:
    output = GROUP_OUTPUT.split("\n\n")[1].replace("1 failed", "0 failed").replace("3/47", "0/0")
    result = parse_group("catenate", ("CATENATE",), output)
    assert not result.failed and result.commands == 0  # the test's own check catches it


def test_stress_output_is_read_for_totals_errors_and_stalls() -> None:
    stderr = "Error: a@b[3]: Keyword used without being in FLAGS: $L2: * 1 FETCH (FLAGS ($L2))\n"
    stderr += "  continued literal line\nError: a@b[4]: BAD reply for command: x\n"
    result = parse_stress(STRESS_STDOUT, stderr, 0)
    assert result.totals["Logi"] == 3932 and sum(result.totals.values()) == 30027
    assert len(result.errors) == 2 and len(result.stalls) == 1
    assert dict(result.error_kinds()) == {
        "Keyword used without being in FLAGS": 1,
        "BAD reply for command": 1,
    }


def test_the_stress_mbox_is_deterministic_and_varied() -> None:
    data = stress_mbox()
    assert data == stress_mbox()
    chunks = data.split(b"\nFrom sender@example.test  ")
    assert len(chunks) == 60
    messages = [
        BytesParser(policy=policy.default).parsebytes(c.partition(b"\n")[2]) for c in chunks
    ]
    types = {part.get_content_type() for m in messages for part in m.walk()}
    assert {"multipart/alternative", "multipart/mixed", "multipart/related"} <= types
    assert {"message/rfc822", "application/pdf", "image/png"} <= types
    encodings = {str(part.get("Content-Transfer-Encoding")) for m in messages for part in m.walk()}
    assert {"7bit", "8bit", "quoted-printable", "base64"} <= encodings
    assert sum(1 for m in messages if m["In-Reply-To"] and m["References"]) >= 5
    assert b"=?utf-8?" in data  # RFC 2047 encoded headers
    headers = [c.split(b"\n\n", 1)[0] for c in chunks]
    assert any(max(h) > 127 for h in headers)  # and raw UTF-8 in a header (RFC 6532)
