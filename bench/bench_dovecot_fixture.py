"""Per-test cost (setup + teardown) of a Dovecot-backed `mail_server`, after the first.

Runs one pytest session, in-process, with N trivial tests per backend and reads
each test's setup and teardown durations from pytest's own reports. The
shared server is one Dovecot for the session, reset before and after each test
(sessions ended, maildirs wiped, changed passwd-files rewritten): the first
test pays Dovecot's start, every later one only the resets.

  fake     the fake servers, for scale
  dovecot  native Dovecot (servers.dovecot.process.DovecotProcess)
  docker   Dovecot in a container (servers.dovecot.container.DovecotContainer): only with
           --docker, since it needs a running engine and a built image

Each test delivers one message, so every reset has a maildir to wipe.

Usage: python bench/bench_dovecot_fixture.py [N] [--docker]   (default N=200)
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
import pytest

N = {n}
MESSAGE = b"Subject: bench\\r\\n\\r\\nhello\\r\\n"

@pytest.mark.parametrize("backend", {backends!r})
@pytest.mark.parametrize("i", range(N))
def test_cost(request, backend, i):
    request.applymarker(pytest.mark.mail_backend(backend))
    server = request.getfixturevalue("mail_server")
    assert server.config.backend == backend
    server.deliver("alice@example.test", MESSAGE)
"""


class CollectCalls:
    def __init__(self) -> None:
        self.costs: dict[str, list[float]] = defaultdict(list)
        self.failed: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.failed.append(f"{report.nodeid}: {report.longreprtext[-400:]}")
        params = report.nodeid.split("[", 1)[1].rstrip("]")
        index_text, backend = params.split("-", 1)
        key = f"{backend} first" if int(index_text) == 0 else backend
        self.costs[key + ":" + report.when].append(report.duration)


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 200
    backends = ["fake", "dovecot"] + (["docker"] if "--docker" in sys.argv else [])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "test_bench_dovecot.py"
        path.write_text(textwrap.dedent(TESTS.format(n=n, backends=backends)))
        collect = CollectCalls()
        code = pytest.main(
            [str(path), "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-x"],
            plugins=[collect],
        )
    if collect.failed:
        print("\n".join(collect.failed))
        return 1
    print(f"\nper-test cost (setup + call + teardown), {n} tests per backend:")
    base = None
    for backend in backends:
        phases = [collect.costs[f"{backend}:{w}"] for w in ("setup", "call", "teardown")]
        totals = [sum(parts) for parts in zip(*phases, strict=True)]
        first = sum(collect.costs[f"{backend} first:{w}"][0] for w in ("setup", "call", "teardown"))
        median = statistics.median(totals)
        base = base or median
        p90 = statistics.quantiles(totals, n=10)[-1]
        print(
            f"  {backend:8} median {median * 1000:7.2f} ms  p90 {p90 * 1000:7.2f} ms  "
            f"first test {first * 1000:8.1f} ms  ({median / base:.1f}x the fake)"
        )
    return int(code)


if __name__ == "__main__":
    raise SystemExit(main())
