"""The connector against every client case of every scenario in the catalog.

Each case is a running server in a scenario (a bad certificate, TLS 1.0 only,
a full mailbox...), the settings a user would type in, and the diagnosis code
a correct connector reports. The test passes exactly when the connector
reports that code: OK where it must work, the right refusal everywhere else.
"""

from __future__ import annotations

from inbox_connector import check
from mailharness import ClientCase, parametrize_cases

import servers  # this project's own module, not mailharness's
from harness import settings_for  # this project's own package, not mailharness's


@parametrize_cases()
def test_connector_reports_what_the_scenario_requires(mail_case: ClientCase) -> None:
    with mail_case.source_bound():  # the allowlist cases connect from 127.0.0.2
        result = check(settings_for(mail_case))
    assert result.code == mail_case.expected.diagnosis.value, (
        f"{mail_case.scenario}/{mail_case.id}: expected {mail_case.expected}, "
        f"the connector said {result.code}: {result.message}"
    )


def test_own_packages_named_like_mailharness_folders_are_ours() -> None:
    """A project with its own `harness` and `servers` loads the plugin beside them."""
    assert servers.PRESETS["gmail"]["imap"][1] == 993
    assert settings_for.__module__ == "harness"
