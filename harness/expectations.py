"""Checking a scenario's expectations against a running server, with real clients.

Used by the catalog's own tests, by `mail_scenario` users who want to assert
"my server behaves as the catalog says", and by the probe. Each expectation is
run as its `ClientCase` (harness.cases): the same settings a connector gets.
"""

from __future__ import annotations

from mailharness.cases import client_cases
from mailharness.scenarios import Scenario
from mailharness.server import MailServer


def mismatches(server: MailServer, scenario: Scenario) -> list[str]:
    """Every expectation of `scenario` that the running server does not meet, described."""
    problems = []
    for case, expect in zip(client_cases(scenario, server), scenario.expect, strict=True):
        seen = case.run_journey()
        if not seen.matches(expect.outcome):
            problems.append(f"{expect.describe()}\n      saw: {seen}")
    return problems
