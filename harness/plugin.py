"""The pytest plugin (entry point `pytest11: mailharness`): fixtures, options, reports.

Fixtures:
  mail_ca              session   the test CA (`MailCA`): client contexts, CA file, leaves
  mail_server          function  a started `MailServer`: IMAP and SMTP sharing users, SMTP
                                 mail to a local user lands in their INBOX; fresh state per
                                 test (one session-wide server, reset around each test)
  imap_server          function  the same server, named for tests that only use IMAP
  smtp_server          function  the same server, named for tests that only use SMTP
  mail_server_factory  function  `factory(config=None, **fields)` starts a custom `MailServer`;
                                 every server it made is stopped when the test ends

Backends: `--mail-backend=fake|dovecot|docker` (ini `mail_backend`) or, per test,
`@pytest.mark.mail_backend("dovecot")`. With Dovecot the shared server is one Dovecot
process ("docker": one container) per test session (per xdist worker), reset between
tests; a scenario not proven on the backend (its `backends`)
is skipped with a reason starting `not applicable:`.
  mail_scenario        function  the running server of a catalog scenario: from
                                 `@pytest.mark.mail_scenario("tls10-only")` (or a .toml file)
                                 or from `@mailharness.parametrize("tls")`

With `@pytest.mark.mail_scenario(name)`, `mail_server`/`imap_server`/`smtp_server` also serve
that scenario (a fresh server for the test) instead of the shared healthy one.

When a test fails, the transcripts of every mail session it opened are added
to its report (`--mail-transcripts=on-failure|always|never`, ini
`mail_transcripts`). At teardown, once the servers have settled, faults of the
harness itself (a handler exception) fail the test, all of them at once. What a
client got wrong or a scenario provoked (a refused handshake, a protocol
violation) is listed in the report section "mail client errors" and fails
nothing, unless `--mail-strict` (ini `mail_strict = true`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from mailharness.cases import ClientCase
from mailharness.certs import MailCA
from mailharness.scenarios import Scenario
from mailharness.server import (
    BACKENDS,
    NOT_APPLICABLE,
    MailConfig,
    MailServer,
    MailServerFactory,
    NotApplicable,
)
from mailharness.servers.errors import choice_error

TRANSCRIPT_MODES = ("on-failure", "always", "never")
_SERVERS_KEY = pytest.StashKey[list[MailServer]]()
_CLIENT_ERRORS_KEY = pytest.StashKey[list[str]]()
#: The --mail-transcripts mode, read once at configure time (every test's report asks).
_MODE_KEY = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mailharness", "mailharness fake mail servers")
    help_text = "when to add mail protocol transcripts to test reports: " + "|".join(
        TRANSCRIPT_MODES
    )
    group.addoption("--mail-transcripts", dest="mail_transcripts", default=None, help=help_text)
    parser.addini("mail_transcripts", help_text, default="on-failure")
    backend_help = "who serves mail to the fixtures: " + "|".join(BACKENDS) + " (default fake)"
    group.addoption("--mail-backend", dest="mail_backend", default=None, help=backend_help)
    parser.addini("mail_backend", backend_help, default="fake")
    strict_help = (
        "also fail a test when a client made a protocol error or a handshake failed "
        "(default: shown in the report only; harness faults always fail)"
    )
    group.addoption("--mail-strict", dest="mail_strict", action="store_true", help=strict_help)
    parser.addini("mail_strict", strict_help, type="bool", default=False)


def _strict(config: pytest.Config) -> bool:
    return bool(config.getoption("mail_strict") or config.getini("mail_strict"))


def _backend_option(config: pytest.Config) -> str:
    value = config.getoption("mail_backend") or config.getini("mail_backend")
    if value not in BACKENDS:
        raise pytest.UsageError(str(choice_error("--mail-backend", value, BACKENDS)))
    return str(value)


def _backend(request: pytest.FixtureRequest) -> str:
    """The backend for this test: `@pytest.mark.mail_backend(...)`, else the option."""
    marker = request.node.get_closest_marker("mail_backend")
    if marker is None:
        return _backend_option(request.config)
    if len(marker.args) != 1 or marker.args[0] not in BACKENDS:
        raise pytest.UsageError(
            f"mail_backend takes one of {', '.join(BACKENDS)}; got {marker.args!r}"
        )
    return str(marker.args[0])


def _transcript_mode(config: pytest.Config) -> str:
    value = config.getoption("mail_transcripts") or config.getini("mail_transcripts")
    if value not in TRANSCRIPT_MODES:
        raise pytest.UsageError(str(choice_error("--mail-transcripts", value, TRANSCRIPT_MODES)))
    return str(value)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_MODE_KEY] = _transcript_mode(config)  # and fail fast on a bad value
    _backend_option(config)
    config.addinivalue_line(
        "markers",
        "mail_backend(name): serve this test's mail from fake, dovecot or docker "
        "(overrides --mail-backend)",
    )
    config.addinivalue_line(
        "markers",
        "mail_scenario(name): serve this catalog scenario (or .toml file, relative to the "
        "test file) to the mail_server/imap_server/smtp_server/mail_scenario fixtures",
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"mailharness: transcripts={_transcript_mode(config)}",
        f"mailharness: backend={_backend_option(config)}",
    ]


def _track(request: pytest.FixtureRequest, server: MailServer) -> None:
    request.node.stash.setdefault(_SERVERS_KEY, []).append(server)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    servers = item.stash.get(_SERVERS_KEY, None)
    if servers and call.when in ("call", "teardown"):
        mode = item.config.stash.get(_MODE_KEY, None) or _transcript_mode(item.config)
        failed = call.excinfo is not None and not call.excinfo.errisinstance(pytest.skip.Exception)
        if (mode == "always" and call.when == "call") or (mode == "on-failure" and failed):
            text = "\n\n".join(s.transcripts.text() for s in servers if len(s.transcripts))
            if text:
                item.add_report_section(call.when, "mail transcripts", text)
    client_errors = item.stash.get(_CLIENT_ERRORS_KEY, None)
    if client_errors and call.when == "teardown":
        item.add_report_section("teardown", "mail client errors", "\n".join(client_errors))
    return (yield)


def _judge(request: pytest.FixtureRequest, servers: list[MailServer]) -> None:
    """Fail the test on faults of the harness itself (and, in strict mode, of clients).

    Each server first settles (what clients sent before the test ended is
    handled), so an error of this test's sessions is never judged in the next.
    What clients got wrong is kept for the report either way.
    """
    __tracebackhide__ = True
    for server in servers:
        server.settle()
    errors = [f"{server!r}: {error}" for server in servers for error in server.errors]
    errors += [
        f"{server!r}: mail store watcher raised {error!r}"
        for server in servers
        for error in server.store.errors
    ]
    client_errors = [f"{server!r}: {e}" for server in servers for e in server.client_errors]
    request.node.stash.setdefault(_CLIENT_ERRORS_KEY, []).extend(client_errors)
    if errors:
        pytest.fail(
            f"the mail server recorded {len(errors)} error(s) of its own (a harness bug):\n"
            + "\n".join(errors),
            pytrace=False,
        )
    if client_errors and _strict(request.config):
        pytest.fail(
            f"--mail-strict: clients made {len(client_errors)} protocol error(s):\n"
            + "\n".join(client_errors),
            pytrace=False,
        )


@pytest.fixture(scope="session")
def mail_ca() -> Iterator[MailCA]:
    """The session's test CA. `mail_ca.client_context()` trusts it; `.ca_path` is the PEM."""
    with MailCA() as ca:
        yield ca


class _SharedServers:
    """One healthy server per backend for the whole session, started when first asked for
    (with Dovecot: one Dovecot process, or one container for "docker", reset between tests)."""

    def __init__(self, ca: MailCA) -> None:
        self._ca = ca
        self._servers: dict[str, MailServer] = {}
        #: Backends whose server the last test's teardown left reset (or never touched):
        #: the next setup need not check again.
        self.clean: set[str] = set()

    def get(self, backend: str) -> MailServer:
        server = self._servers.get(backend)
        if server is None:
            server = MailServer(MailConfig(backend=backend), ca=self._ca).start()
            self._servers[backend] = server
        return server

    def stop(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()


@pytest.fixture(scope="session")
def _mailharness_shared_servers(mail_ca: MailCA) -> Iterator[_SharedServers]:
    shared = _SharedServers(mail_ca)
    try:
        yield shared
    finally:
        shared.stop()


def _requested_scenario(request: pytest.FixtureRequest) -> Scenario | None:
    from mailharness.catalog import scenario

    name = getattr(request, "param", None)
    if name is None:
        marker = request.node.get_closest_marker("mail_scenario")
        if marker is None:
            return None
        if len(marker.args) != 1:
            raise pytest.UsageError("mail_scenario takes one scenario name or .toml path")
        name = marker.args[0]
    if isinstance(name, Scenario):
        return name
    return scenario(name, relative_to=request.path.parent)


def _serve_scenario(
    request: pytest.FixtureRequest, chosen: Scenario, ca: MailCA
) -> Iterator[MailServer]:
    backend = _backend(request)
    if backend not in chosen.backends:
        pytest.skip(
            f"{NOT_APPLICABLE} scenario {chosen.name!r} is not proven on backend "
            f"{backend!r} (its backends: {', '.join(chosen.backends)})"
            + (f": {chosen.fake_only_reason}" if chosen.fake_only_reason else "")
        )
    try:
        server = chosen.serve(ca=ca, backend=backend)
    except NotApplicable as error:
        pytest.skip(str(error))
    try:
        _track(request, server)
        yield server
        _judge(request, [server])
    finally:
        server.stop()


def _fresh_shared_server(
    request: pytest.FixtureRequest, shared: _SharedServers
) -> Iterator[MailServer]:
    chosen = _requested_scenario(request)
    if chosen is not None:
        yield from _serve_scenario(request, chosen, request.getfixturevalue("mail_ca"))
        return
    backend = _backend(request)
    server = shared.get(backend)
    if backend in shared.clean:
        shared.clean.discard(backend)  # a second fixture of this test resets again, as ever
    else:
        server.reset()
    _track(request, server)
    yield server
    if server.pristine():
        shared.clean.add(backend)
        return  # untouched by the test: nothing to judge, nothing to reset
    try:
        _judge(request, [server])
    finally:
        server.reset()
        shared.clean.add(backend)


@pytest.fixture
def mail_server(
    request: pytest.FixtureRequest, _mailharness_shared_servers: _SharedServers
) -> Iterator[MailServer]:
    """A running fake IMAP + SMTP server (plain, STARTTLS and implicit-TLS listeners each).

    `server.imap.implicit`, `server.smtp.starttls`...: endpoints; `server.users`: accounts;
    `server.deliver(user, message)`: seed mail; `server.messages`: mail accepted over SMTP.
    """
    yield from _fresh_shared_server(request, _mailharness_shared_servers)


@pytest.fixture
def imap_server(
    request: pytest.FixtureRequest, _mailharness_shared_servers: _SharedServers
) -> Iterator[MailServer]:
    """`mail_server`, for tests that only speak IMAP."""
    yield from _fresh_shared_server(request, _mailharness_shared_servers)


@pytest.fixture
def smtp_server(
    request: pytest.FixtureRequest, _mailharness_shared_servers: _SharedServers
) -> Iterator[MailServer]:
    """`mail_server`, for tests that only speak SMTP."""
    yield from _fresh_shared_server(request, _mailharness_shared_servers)


@pytest.fixture
def mail_scenario(request: pytest.FixtureRequest, mail_ca: MailCA) -> Iterator[MailServer]:
    """The running server of the scenario named by the marker or by `catalog.parametrize`."""
    chosen = _requested_scenario(request)
    if chosen is None:
        raise pytest.UsageError(
            "mail_scenario needs @pytest.mark.mail_scenario(name) or @mailharness.parametrize(...)"
        )
    yield from _serve_scenario(request, chosen, mail_ca)


@pytest.fixture
def mail_case(request: pytest.FixtureRequest, mail_ca: MailCA) -> Iterator[ClientCase]:
    """One client case (settings and expected diagnosis) against a fresh server of its
    scenario; from `@mailharness.parametrize_cases(...)`."""
    from mailharness.cases import client_cases
    from mailharness.catalog import CATALOG

    param = getattr(request, "param", None)
    if param is None:
        raise pytest.UsageError("mail_case needs @mailharness.parametrize_cases(...)")
    name, case_id = param
    chosen = CATALOG[name]
    for server in _serve_scenario(request, chosen, mail_ca):
        [case] = [c for c in client_cases(chosen, server) if c.id == case_id]
        yield case


@pytest.fixture
def mail_server_factory(
    request: pytest.FixtureRequest, mail_ca: MailCA
) -> Iterator[MailServerFactory]:
    """Start servers with custom configs: `factory(cert="expired")`, `factory(config, smtp=...)`.

    Keyword fields replace those of `config` (default `MailConfig()`); a wrong
    field name is an error listing the fields there are. The server runs on the
    test's backend (`--mail-backend`, `@pytest.mark.mail_backend`) unless `config`
    or `backend=` names another; a config that backend cannot serve is skipped
    as `not applicable: ...`.
    """
    started: list[MailServer] = []
    backend = _backend(request)

    def factory(config: MailConfig | None = None, **fields: Any) -> MailServer:
        base = config or MailConfig()
        if "backend" not in fields and base.backend == "fake":
            # The test's backend (--mail-backend, @mail_backend) unless the config or the
            # call names another one.
            fields["backend"] = backend
        if fields:
            known = [f.name for f in dataclasses.fields(MailConfig)]
            for name in fields:
                if name not in known:
                    raise choice_error("field", name, known)
            base = dataclasses.replace(base, **fields)
        try:
            server = MailServer(base, ca=mail_ca).start()
        except NotApplicable as error:
            pytest.skip(str(error))
        started.append(server)
        _track(request, server)
        return server

    try:
        yield factory
        _judge(request, started)
    finally:
        for server in started:
            server.stop()
