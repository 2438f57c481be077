"""Every scenario of the catalog, served and met by real clients exactly as documented."""

from __future__ import annotations

import pytest
from mailharness.catalog import CATALOG
from mailharness.certs import MailCA
from mailharness.expectations import mismatches
from mailharness.scenarios import Scenario

CHECKED = [s for s in CATALOG.values() if not s.dynamic]


@pytest.mark.parametrize("scenario", CHECKED, ids=lambda s: s.name)
def test_scenario_meets_its_expectations(scenario: Scenario, mail_ca: MailCA) -> None:
    assert scenario.expect, f"{scenario.name}: a non-dynamic scenario must state expectations"
    server = scenario.serve(ca=mail_ca)
    try:
        problems = mismatches(server, scenario)
    finally:
        server.stop()
    assert not problems, f"{scenario.name}:\n  " + "\n  ".join(problems)


def test_every_family_is_represented() -> None:
    from mailharness.scenarios import Family

    assert {s.family for s in CATALOG.values()} == set(Family)
