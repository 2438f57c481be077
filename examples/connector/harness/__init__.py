"""This project's own test helpers: a package named `harness`, as many projects have.

mailharness installs one import package, `mailharness`, so a project's own `harness`
and `servers` (see servers.py) live beside it without a clash; the suite proves it.
"""

from __future__ import annotations

from inbox_connector import Settings
from mailharness import ClientCase


def settings_for(case: ClientCase) -> Settings:
    """The connector's settings form, filled in from a mailharness client case."""
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
