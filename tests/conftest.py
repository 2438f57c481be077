"""Shared helpers of mailharness's own test suite.

In CI (`CI` set), a skip is a failure: tests that need swaks, curl, Dovecot
or Docker must run there, not quietly skip. The only skips allowed are those
whose reason starts with `not applicable:` (a scenario a backend cannot serve).
The rule covers every way out: a skip in a test or fixture, a module-level
`pytest.skip(..., allow_module_level=True)` or `pytest.importorskip` (a skipped
collection), and any xfail, expected failure and unexpected pass alike: a known
failure in CI is fixed or removed, not carried.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import in_ci

# tests.leakcheck: threads, sockets, children, containers, temp dirs left at the end fail.
pytest_plugins = ["pytester", "tests.leakcheck"]

ALLOWED_SKIP_PREFIX = "not applicable:"


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
    return reason.removeprefix("Skipped: ")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report: pytest.TestReport = yield
    if not in_ci():
        return report
    if hasattr(report, "wasxfail"):  # xfailed (reported skipped) or xpassed (passed)
        what = "xfail" if report.skipped else "xpass"
        reason = report.wasxfail
        del report.wasxfail  # else the terminal still shows it as x/X
        report.outcome = "failed"
        report.longrepr = f"{what} in CI, which counts as a failure: {reason}"
    elif report.skipped and not _skip_reason(report).startswith(ALLOWED_SKIP_PREFIX):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {_skip_reason(report)}"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[Any]:
    """A module-level skip or importorskip skips a whole file at collection: same rule."""
    report: pytest.CollectReport = yield
    if in_ci() and report.skipped:
        reason = _skip_reason(report)
        if not reason.startswith(ALLOWED_SKIP_PREFIX):
            report.outcome = "failed"
            report.longrepr = f"collection skipped in CI, which counts as a failure: {reason}"
    return report


# Figures a test wants in the run's closing lines (imaptest's summary, for one): a
# `record_property("mailharness_summary", text)` travels with the report, also from
# xdist workers, and is printed after the run.
_SUMMARIES: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _SUMMARIES.extend(str(v) for k, v in report.user_properties if k == "mailharness_summary")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _SUMMARIES:
        terminalreporter.section("mailharness figures")
        for line in sorted(_SUMMARIES):
            terminalreporter.write_line(line)
