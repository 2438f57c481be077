"""Per-test cost (setup + teardown) of the `smtp_server` fixture, beside its peers.

Runs one pytest session, in-process, with N trivial tests per contender and
reads each test's setup and teardown durations from pytest's own reports:

  smtp_server            ours: session-wide server with TLS listeners, reset per test
  aiosmtpd Controller    bare peer: a Controller with a STARTTLS context, started and
                         stopped per test (what a project writes without mailharness)
  mail_server_factory()  ours, fresh: a whole new server (three listeners, TLS) per test

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

@pytest.fixture
def controller(mail_ca):
    ctl = Controller(Sink(), hostname="127.0.0.1", port=free_port(), server_hostname="localhost",
                     tls_context=mail_ca.server_context())
    ctl.start()
    yield ctl
    ctl.stop()

@pytest.mark.parametrize("i", range(N))
def test_ours(smtp_server, i):
    pass

@pytest.mark.parametrize("i", range(N))
def test_controller(controller, i):
    pass

@pytest.mark.parametrize("i", range(N))
def test_fresh(mail_server_factory, i):
    mail_server_factory()
"""

LABELS = {
    "test_ours": "smtp_server (ours, reset per test)",
    "test_controller": "aiosmtpd Controller start/stop",
    "test_fresh": "mail_server_factory() (ours, fresh)",
}


class _Timer:
    def __init__(self) -> None:
        self.cost: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when in ("setup", "teardown"):
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
        groups[name].append((phases["setup"] + phases["teardown"]) * 1e6)
    baseline = statistics.median(groups["test_controller"])
    print(f"\nper-test fixture cost (setup + teardown), median of {n - 1} tests")
    print(f"{'contender':40} {'median µs':>10} {'p90 µs':>10} {'vs Controller':>14}")
    for name in ("test_ours", "test_controller", "test_fresh"):
        values = sorted(groups[name])
        median = statistics.median(values)
        p90 = values[int(len(values) * 0.9)]
        print(f"{LABELS[name]:40} {median:10.0f} {p90:10.0f} {median / baseline:13.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
