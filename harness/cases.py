"""Client cases: for each scenario, how to configure a connector and what it must see.

A scenario's expectations say, per listener, what a correctly written client
meets. A `ClientCase` turns one of them into the settings a user types into
their connector against a *running* server (host, port, security, user name,
the secret to enter, whether to allow a non-secure certificate, TLS versions,
source address, timeout) and the expected result as data: a stable
`Diagnosis` code, the step that fails, and what Python's imaplib/smtplib
raise there.

    @mailharness.parametrize_cases()              # every case of every scenario
    def test_my_connector(mail_case):
        result = my_connector.check(
            host=mail_case.host, port=mail_case.port, security=mail_case.security.value,
            username=mail_case.username, password=mail_case.password,
            verify_certificate=mail_case.verify_certificate, timeout=mail_case.timeout,
            source_address=mail_case.source_address,
        )
        assert result.code == mail_case.expected.diagnosis.value
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailharness.diagnosis import Diagnosis, diagnose
from mailharness.journeys import ClientProfile, Outcome, imap_journey, smtp_journey
from mailharness.scenarios import Expect, Scenario
from mailharness.server import MailServer
from mailharness.servers.accounts import User
from mailharness.servers.errors import ConfigError
from mailharness.servers.listeners import Endpoint, Security

__all__ = ["ClientCase", "Expected", "case_ids", "client_cases"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Expected:
    """What a correct connector meets: a code for any library, and Python's own words.

    `python` is what imaplib/smtplib (with ssl and socket) raise or return at
    `python.step`: exception class, message (contained), SMTP reply code.
    """

    diagnosis: Diagnosis
    python: Outcome

    @property
    def ok(self) -> bool:
        return self.diagnosis is Diagnosis.OK

    def __str__(self) -> str:
        return f"{self.diagnosis.value} ({self.python})"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCase:
    """The settings a user gives their connector for one scenario case, and the expected end.

    `security` is what the connector is *set to* (it may differ from the listener's on
    purpose: implicit TLS configured against a plaintext port). `password` is the secret
    to enter: the account password, an app password, an OAuth token (`auth="xoauth2"`)
    or, for the wrong-password cases, a wrong one. `source_address` is the loopback
    address the client must connect from (IP allowlist cases); `connect()` binds it.
    """

    scenario: str
    id: str
    protocol: str
    host: str
    port: int
    security: Security
    username: str
    password: str
    auth: str  # "password" (IMAP LOGIN, SMTP AUTH PLAIN/LOGIN) or "xoauth2"
    verify_certificate: bool
    tls: str  # "default", "legacy" (accepts TLS 1.0/1.1) or "tls1.0-only"
    ca_path: Path
    source_address: str | None
    timeout: float
    server_name: str
    expected: Expected
    profile: ClientProfile
    user: User

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.protocol, self.host, self.port, self.security)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context as this case's connector settings make it (CA trusted)."""
        return self.profile.context(self.ca_path)

    def connect(self) -> socket.socket:
        """A TCP connection from `source_address` (if any), with the case's timeout."""
        source = (self.source_address, 0) if self.source_address else None
        return socket.create_connection(self.address, self.timeout, source_address=source)

    @contextlib.contextmanager
    def source_bound(self) -> Iterator[None]:
        """Within the block, `socket.create_connection` binds `source_address`.

        For client libraries that open their own sockets without a source-address
        setting (imaplib, imapclient). Process-wide while the block runs: use it
        around one connector call, not with other threads connecting meanwhile.
        A case without a source address changes nothing.
        """
        if not self.source_address:
            yield
            return
        original = socket.create_connection
        default_source = (self.source_address, 0)

        def bound(
            address: tuple[str, int],
            timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
            source_address: tuple[str, int] | None = None,
            **kwargs: Any,
        ) -> socket.socket:
            return original(address, timeout, source_address or default_source, **kwargs)

        socket.create_connection = bound  # type: ignore[assignment]  # same call shape
        try:
            yield
        finally:
            socket.create_connection = original

    def run_journey(self) -> Outcome:
        """What imaplib/smtplib see doing a connector's work with these settings."""
        journey = imap_journey if self.protocol == "imap" else smtp_journey
        return journey(self.endpoint, self.profile, self.user, self.ca_path)

    def environment(self, prefix: str = "MAILHARNESS_") -> dict[str, str]:
        """The case as environment variables, for a connector in any language."""
        values = {
            "SCENARIO": self.scenario,
            "CASE": self.id,
            "PROTOCOL": self.protocol,
            "HOST": self.host,
            "PORT": str(self.port),
            "SECURITY": self.security.value,
            "USERNAME": self.username,
            "PASSWORD": self.password,
            "AUTH": self.auth,
            "VERIFY_CERTIFICATE": "1" if self.verify_certificate else "0",
            "TLS": self.tls,
            "CA_PATH": str(self.ca_path),
            "SOURCE_ADDRESS": self.source_address or "",
            "TIMEOUT": f"{self.timeout:g}",
            "EXPECTED": self.expected.diagnosis.value,
        }
        return {prefix + key: value for key, value in values.items()}


def _case_id(expect: Expect) -> str:
    parts = [expect.protocol, (expect.connect_as or expect.security).value]
    if expect.connect_as is not None:
        parts.append(f"on-{expect.security.value}-port")
    if expect.client.name != "default":
        parts.append(expect.client.name)
    return "-".join(parts)


def case_ids(scenario: Scenario) -> list[str]:
    """The ids of a scenario's cases, known without a running server (for parametrize)."""
    ids = [_case_id(expect) for expect in scenario.expect]
    return [f"{i}-{ids[:n].count(i) + 1}" if ids.count(i) > 1 else i for n, i in enumerate(ids)]


def expected_for(expect: Expect) -> Expected:
    """The expected end of one expectation, with its diagnosis code."""
    security = expect.connect_as or expect.security
    secure = security is Security.IMPLICIT or (
        security is Security.STARTTLS and expect.outcome.step not in ("connect", "greeting")
    )
    return Expected(diagnosis=diagnose(expect.outcome, secure=secure), python=expect.outcome)


def client_cases(
    scenario: Scenario, server: MailServer, configured: tuple[User, ...] | None = None
) -> tuple[ClientCase, ...]:
    """Every case of `scenario` against its running `server`, in catalog order.

    The user's credentials are those the connector was set up with
    (`configured`, default the scenario's users), not the server's current
    ones: a password changed on the server is what the connector must not know.
    """
    users = configured if configured is not None else scenario.config.users
    cases = []
    for case_id, expect in zip(case_ids(scenario), scenario.expect, strict=True):
        endpoints = server.imap if expect.protocol == "imap" else server.smtp
        endpoint: Endpoint = endpoints.get(expect.security)
        if expect.connect_as is not None:
            endpoint = dataclasses.replace(endpoint, security=expect.connect_as)
        if expect.host is not None:
            endpoint = dataclasses.replace(endpoint, host=expect.host)
        wanted = expect.user or users[0].login
        user = next((u for u in users if u.login == wanted), None)
        if user is None:
            raise ConfigError(f"expect user={expect.user!r}: no such user on this server")
        profile = expect.client
        cases.append(
            ClientCase(
                scenario=scenario.name,
                id=case_id,
                protocol=expect.protocol,
                host=endpoint.host,
                port=endpoint.port,
                security=endpoint.security,
                username=user.login,
                password=profile.credential(user),
                auth="xoauth2" if profile.mechanism == "xoauth2" else "password",
                verify_certificate=profile.verify,
                tls=profile.tls,
                ca_path=server.ca.ca_path,
                source_address=profile.source,
                timeout=profile.timeout,
                server_name=profile.server_name,
                expected=expected_for(expect),
                profile=profile,
                user=user,
            )
        )
    return tuple(cases)
