"""Checking a scenario's expectations against a running server, with real clients.

Used by the catalog's own tests, by `mail_scenario` users who want to assert
"my server behaves as the catalog says", and (later) by the probe.
"""

from __future__ import annotations

import dataclasses

from harness.journeys import Outcome, imap_journey, smtp_journey
from harness.scenarios import Expect, Scenario
from harness.server import MailServer
from servers.accounts import User
from servers.errors import ConfigError


def run_expectation(
    server: MailServer, expect: Expect, configured: tuple[User, ...] | None = None
) -> Outcome:
    """Run the journey an expectation describes and return what the client saw.

    The client knows the credentials it was set up with (`configured`, default
    the server's config), not the server's current ones: a password changed
    on the server is exactly what the client must not know.
    """
    endpoints = server.imap if expect.protocol == "imap" else server.smtp
    endpoint = endpoints.get(expect.security)
    if expect.connect_as is not None:
        endpoint = dataclasses.replace(endpoint, security=expect.connect_as)
    if expect.host is not None:
        endpoint = dataclasses.replace(endpoint, host=expect.host)
    users = configured if configured is not None else server.config.users
    wanted = expect.user or users[0].login
    user = next((u for u in users if u.login == wanted), None)
    if user is None:
        raise ConfigError(f"expect user={expect.user!r}: no such user on this server")
    journey = imap_journey if expect.protocol == "imap" else smtp_journey
    return journey(endpoint, expect.client, user, server.ca.ca_path)


def mismatches(server: MailServer, scenario: Scenario) -> list[str]:
    """Every expectation of `scenario` that the running server does not meet, described."""
    problems = []
    for expect in scenario.expect:
        seen = run_expectation(server, expect, scenario.config.users)
        if not seen.matches(expect.outcome):
            problems.append(f"{expect.describe()}\n      saw: {seen}")
    return problems
