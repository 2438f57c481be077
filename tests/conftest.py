"""Shared helpers of mailharness's own test suite.

In CI (`CI` set), a skip is a failure: tests that need swaks, curl, Dovecot
or Docker must run there, not quietly skip. The only skips allowed are those
whose reason starts with `not applicable:` (a scenario a backend cannot serve).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import in_ci

# tests.leakcheck: threads, sockets, children, containers, temp dirs left at the end fail.
pytest_plugins = ["pytester", "tests.leakcheck"]

ALLOWED_SKIP_PREFIX = "not applicable:"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
        if not reason.removeprefix("Skipped: ").startswith(ALLOWED_SKIP_PREFIX):
            report.outcome = "failed"
            report.longrepr = f"skipped in CI, which counts as a failure: {reason}"
    return report
