"""Per-test cost of the `smtp_server` fixture, beside its like-for-like peers.

Runs one pytest session, in-process, with N trivial tests per contender and
reads each test's setup, call and teardown durations from pytest's own reports
(the call counts: `mail_server_factory()` starts its server inside the test):

  bare test                   no fixture: pytest's own cost per test, for reference
  smtp_server                 ours: session-wide server with TLS listeners, reset per test
  Controller, session, reset  peer: one aiosmtpd Controller (STARTTLS context) for the
                              session, its handler's messages cleared per test
  Controller per test         peer: a Controller started and stopped per test (what a
                              project writes without mailharness)
  mail_server_factory()       ours, fresh: a whole new server (three listeners, TLS) per
                              test, its start counted

Like for like: the shared fixture against the session-wide Controller ("ctl-s"), the
fresh server against the Controller per test ("ctl"): "extra µs" is what a test pays
over its peer, "vs peer" the ratio of the per-test medians (pytest's own cost included,
as a suite pays it; the bare test shows that part).

Usage: python bench/bench_smtp_fixture.py [N]   (default N=300). Prints medians and ratios.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

TESTS = """
import socket
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink

N = {n}

def free_port():
    # The Controller cannot take port 0 (its readiness probe connects to the port it was
    # given), so a project without mailharness asks the kernel for a free port first.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

class Collect(Sink):
    # Sink, keeping what arrives (a shared server must be reset between tests).

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"

@pytest.fixture
def controller(mail_ca):
    ctl = Controller(Sink(), hostname="127.0.0.1", port=free_port(), server_hostname="localhost",
                     tls_context=mail_ca.server_context())
    ctl.start()
    yield ctl
    ctl.stop()

@pytest.fixture(scope="session")
def session_controller(mail_ca):
    ctl = Controller(Collect(), hostname="127.0.0.1", port=free_port(),
                     server_hostname="localhost", tls_context=mail_ca.server_context())
    ctl.start()
    yield ctl
    ctl.stop()

@pytest.fixture
def reset_controller(session_controller):
    session_controller.handler.messages.clear()
    yield session_controller
    session_controller.handler.messages.clear()

@pytest.mark.parametrize("i", range(N))
def test_bare(i):
    pass

@pytest.mark.parametrize("i", range(N))
def test_ours(smtp_server, i):
    pass

@pytest.mark.parametrize("i", range(N))
def test_session_controller(reset_controller, i):
    pass

@pytest.mark.parametrize("i", range(N))
def test_controller(controller, i):
    pass

@pytest.mark.parametrize("i", range(N))
def test_fresh(mail_server_factory, i):
    mail_server_factory()
"""

LABELS = {
    "test_bare": "bare test (no fixture)",
    "test_ours": "smtp_server (ours, reset per test)",
    "test_session_controller": "Controller, session-wide, reset",
    "test_controller": "Controller started/stopped per test",
    "test_fresh": "mail_server_factory() (ours, fresh)",
}
#: contender -> the peer it is compared with, like for like.
PEERS = {
    "test_ours": "test_session_controller",
    "test_session_controller": "test_session_controller",
    "test_controller": "test_controller",
    "test_fresh": "test_controller",
}


class _Timer:
    def __init__(self) -> None:
        self.cost: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Interleave the contenders (test i of each, then i + 1...), rotating their order
        each round: a shared machine's load, and what a test leaves behind (a stopped
        thread, garbage), then weigh on all alike."""
        names = list(dict.fromkeys(item.nodeid.split("::")[1].split("[")[0] for item in items))

        def key(item: pytest.Item) -> tuple[int, int]:
            index = int(item.nodeid.split("[")[1].rstrip("]"))
            name = item.nodeid.split("::")[1].split("[")[0]
            return index, (names.index(name) + index) % len(names)

        items.sort(key=key)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when in ("setup", "call", "teardown"):
            self.cost[report.nodeid][report.when] += report.duration
        if report.failed:
            raise SystemExit(f"benchmark test failed: {report.nodeid}\n{report.longrepr}")


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    timer = _Timer()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "test_bench.py"
        path.write_text(textwrap.dedent(TESTS.format(n=n)))
        code = pytest.main(
            [str(path), "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--no-header"],
            plugins=[timer],
        )
    if code != 0:
        return int(code)
    groups: dict[str, list[float]] = defaultdict(list)
    for nodeid, phases in timer.cost.items():
        name = nodeid.split("::")[1].split("[")[0]
        index = int(nodeid.split("[")[1].rstrip("]"))
        if index == 0:
            continue  # the first test of each group pays session set-up (CA, shared server)
        groups[name].append(sum(phases.values()) * 1e6)
    medians = {name: statistics.median(values) for name, values in groups.items()}
    print(f"\nper-test cost (setup + call + teardown), median of {n - 1} tests per contender")
    print(
        f"{'contender':40} {'median µs':>10} {'p90 µs':>10} {'peer':>6}"
        f" {'extra µs':>9} {'vs peer':>8}"
    )
    for name in LABELS:
        values = sorted(groups[name])
        p90 = values[int(len(values) * 0.9)]
        peer = PEERS.get(name)
        extra = versus = ""
        if peer is not None and peer != name:
            extra = f"{medians[name] - medians[peer]:9.0f}"
            versus = f"{medians[name] / medians[peer]:7.2f}x"
        label = "" if peer is None or peer == name else ("ctl-s" if "session" in peer else "ctl")
        row = f"{LABELS[name]:40} {medians[name]:10.0f} {p90:10.0f}"
        print(f"{row} {label:>6} {extra:>9} {versus:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
