"""The same scenario, served by the fake and by a real Dovecot, meets the same expectations.

For every catalog scenario whose `backends` include "dovecot", the journeys of
`harness.expectations` run against the fake and against Dovecot, once as a native
process ("dovecot") and once in a container ("docker"), and each must see exactly
what the catalog states (step, exception class, SMTP code and text): the fake
is only as good as its agreement with the real thing. Dovecot serves every
listener the fake does (a `none` listener beside TLS ones is its plain port,
used without STARTTLS), so every expectation runs on all three.

Every other static scenario names why Dovecot does not serve it
(`Scenario.fake_only_reason`, shown in docs/scenarios.md).
"""

from __future__ import annotations

import pytest
from mailharness.catalog import CATALOG
from mailharness.certs import MailCA
from mailharness.expectations import mismatches
from mailharness.scenarios import Scenario

from tests.helpers import require_backend

# Native Dovecot and the same Dovecot in Docker: both must agree with the fake.
REAL_BACKENDS = ("dovecot", "docker")
ON_DOVECOT = [s for s in CATALOG.values() if "dovecot" in s.backends and not s.dynamic]


def check(scenario: Scenario, backend: str, ca: MailCA) -> list[str]:
    server = scenario.serve(ca=ca, backend=backend)
    try:
        return mismatches(server, scenario)
    finally:
        server.stop()


def test_some_scenarios_are_proven_on_dovecot() -> None:
    assert len(ON_DOVECOT) >= 36


def test_every_static_scenario_dovecot_does_not_serve_says_why() -> None:
    """The Build rule: every static scenario runs on Dovecot or names the reason it cannot."""
    for scenario in CATALOG.values():
        if scenario.dynamic:
            continue
        on_dovecot = "dovecot" in scenario.backends
        assert bool(scenario.fake_only_reason) != on_dovecot, (
            f"{scenario.name}: backends={scenario.backends}, "
            f"fake_only_reason={scenario.fake_only_reason!r}"
        )
        assert "\n" not in scenario.fake_only_reason


def test_docker_is_marked_only_where_proven() -> None:
    """Every scenario marked "docker" is one this module proves there (it is on Dovecot)."""
    assert {s.name for s in CATALOG.values() if "docker" in s.backends} <= {
        s.name for s in ON_DOVECOT
    }


@pytest.mark.parametrize("backend", REAL_BACKENDS)
@pytest.mark.parametrize("scenario", ON_DOVECOT, ids=lambda s: s.name)
def test_fake_and_dovecot_meet_the_same_expectations(
    scenario: Scenario, backend: str, mail_ca: MailCA
) -> None:
    require_backend(backend)
    problems = [f"fake: {p}" for p in check(scenario, "fake", mail_ca)]
    problems += [f"{backend}: {p}" for p in check(scenario, backend, mail_ca)]
    assert not problems, (
        f"{scenario.name} ({len(scenario.expect)} expectations):\n  " + "\n  ".join(problems)
    )
