"""The connector against every client case of every scenario in the catalog.

Each case is a running server in a scenario (a bad certificate, TLS 1.0 only,
a full mailbox...), the settings a user would type in, and the diagnosis code
a correct connector reports. The test passes exactly when the connector
reports that code: OK where it must work, the right refusal everywhere else.
"""

from __future__ import annotations

from inbox_connector import Settings, check

from harness.cases import ClientCase
from harness.catalog import parametrize_cases


def settings_for(case: ClientCase) -> Settings:
    return Settings(
        protocol=case.protocol,
        host=case.host,
        port=case.port,
        security=case.security.value,
        username=case.username,
        password=case.password,
        auth=case.auth,
        verify_certificate=case.verify_certificate,
        allow_legacy_tls=case.tls != "default",
        ca_file=str(case.ca_path),
        timeout=case.timeout,
        source_address=case.source_address,
    )


@parametrize_cases()
def test_connector_reports_what_the_scenario_requires(mail_case: ClientCase) -> None:
    with mail_case.source_bound():  # the allowlist cases connect from 127.0.0.2
        result = check(settings_for(mail_case))
    assert result.code == mail_case.expected.diagnosis.value, (
        f"{mail_case.scenario}/{mail_case.id}: expected {mail_case.expected}, "
        f"the connector said {result.code}: {result.message}"
    )
