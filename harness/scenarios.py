"""Scenarios as data: a named server condition, how to serve it, what a client sees.

A `Scenario` names the requirement it exercises, holds the `MailConfig`
that serves it (backend settings and front faults), an optional `prepare`
step for state (a full mailbox, a lockout), and `Expect`s: for a listener
and a client profile, the `Outcome` a correct client sees. The catalog
(`harness.catalog`) is the single source for the docs table, `mailharness
scenarios`, the CLI, pytest's marker and the catalog's own tests.

    scenario = get("tls10-only")
    with scenario.serve() as server:
        ...
"""

from __future__ import annotations

import dataclasses
import enum
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import field
from typing import Any

from mailharness.certs import MailCA
from mailharness.profiles import ClientProfile, Outcome
from mailharness.server import MailConfig, MailServer
from mailharness.servers.errors import ConfigError, choice_error, parse_choice
from mailharness.servers.listeners import Security
from mailharness.servers.records import record

BACKENDS = ("fake", "dovecot", "docker")


class Family(enum.Enum):
    BASELINE = "baseline"
    CONNECT = "connect"
    TLS = "tls"
    CERT = "cert"
    AUTH = "auth"
    MAILBOX = "mailbox"
    LIMITS = "limits"
    AVAILABILITY = "availability"
    ACCESS = "access"


@record
class Expect:
    """What a client configured as `client` sees on one listener.

    `connect_as` is the security the *client* uses when it differs from the
    listener's (a connector set to implicit TLS pointed at a plaintext port);
    `host` replaces the host it connects to (a wrong host name); `user` picks
    the account (login) it uses, default the first user.
    """

    protocol: str
    security: Security
    outcome: Outcome
    client: ClientProfile = field(default_factory=ClientProfile)
    connect_as: Security | None = None
    host: str | None = None
    user: str | None = None

    def describe(self) -> str:
        parts = [f"{self.protocol}/{self.security.value}"]
        if self.connect_as is not None:
            parts.append(f"as {self.connect_as.value}")
        if self.client.name != "default":
            parts.append(f"({self.client.name} client)")
        return " ".join(parts) + f" -> {self.outcome}"


@record
class Scenario:
    """One named, reproducible server condition; vary with `dataclasses.replace`."""

    name: str
    family: Family
    requirement: str  # the connector requirement it exercises
    server: str  # what the server does
    client_sees: str  # what a correct client sees
    personality: str = "dovecot"
    config: MailConfig = field(default_factory=MailConfig)
    # State a running server needs (fill a mailbox, arm a lockout...), run after start.
    prepare: Callable[[MailServer], None] | None = None
    expect: tuple[Expect, ...] = ()
    # Checked by a dedicated test instead of journeys (timing, two sessions, run-time switch).
    dynamic: bool = False
    backends: tuple[str, ...] = ("fake",)
    # Why Dovecot does not serve it (one line; the catalog gives one for every static
    # scenario outside the "dovecot" backend, shown in docs/scenarios.md).
    fake_only_reason: str = ""

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip().lower() or " " in self.name:
            raise ConfigError(f"name={self.name!r}: expected lower-case words joined by '-'")
        for backend in self.backends:
            if backend not in BACKENDS:
                raise choice_error("backends", backend, BACKENDS)

    def serve(self, *, ca: MailCA | None = None, backend: str | None = None) -> MailServer:
        """A started server in this condition (sync face); stop it when done.

        `backend` ("fake", "dovecot", "docker") overrides the config's. A backend
        outside `backends` is not refused here (the pytest plugin skips those).
        """
        config = self.config
        if backend is not None and backend != config.backend:
            config = dataclasses.replace(config, backend=backend)
        server = MailServer(config, ca=ca, label=self.name).start()
        try:
            if self.prepare is not None:
                self.prepare(server)
        except BaseException:
            server.stop()
            raise
        return server


class Catalog(Mapping[str, Scenario]):
    """Scenarios by name, in catalog order; unknown names suggest the closest ones.

    `families`: functions that build the rest of the catalog, a family each, called in
    order as far as a name needs (`mailharness serve --scenario plaintext-only` builds
    three of nine families; the whole catalog cost ~4 ms of its start, issue 13). Going
    through the catalog, or a name it lacks, builds them all.
    """

    def __init__(
        self,
        scenarios: Iterable[Scenario] = (),
        *,
        families: Iterable[Callable[[], Iterable[Scenario]]] = (),
    ) -> None:
        self._by_name: dict[str, Scenario] = {}
        self._pending = list(families)
        self._lock = threading.Lock()
        self._add(scenarios)

    def _add(self, scenarios: Iterable[Scenario]) -> None:
        for scenario in scenarios:
            if scenario.name in self._by_name:
                raise ConfigError(f"scenario name {scenario.name!r} is used twice")
            self._by_name[scenario.name] = scenario

    def _built(self, name: str | None = None) -> dict[str, Scenario]:
        """The scenarios, with families built until `name` is among them (None: all)."""
        while self._pending and (name is None or name not in self._by_name):
            with self._lock:
                if self._pending and (name is None or name not in self._by_name):
                    self._add(self._pending[0]())
                    del self._pending[0]
        return self._by_name

    def __getitem__(self, name: str) -> Scenario:
        try:
            return self._built(name)[name]
        except KeyError:
            import difflib  # a mistake's hint only: kept out of start-up

            close = difflib.get_close_matches(name, self._by_name, n=3, cutoff=0.5)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            raise ConfigError(
                f"scenario={name!r}: no such scenario{hint}; `mailharness scenarios` lists "
                f"all {len(self._by_name)}"
            ) from None

    def __iter__(self) -> Any:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())

    def family(self, family: Family | str) -> list[Scenario]:
        wanted = family if isinstance(family, Family) else _family(family)
        return [s for s in self._built().values() if s.family is wanted]


def _family(value: str) -> Family:
    return parse_choice(Family, value, "family")


# --- personalities -----------------------------------------------------------------------
def with_personality(config: MailConfig, personality: str) -> MailConfig:
    """The same config speaking as another provider (wording and limits), both protocols."""
    changes: dict[str, Any] = {}
    if config.smtp is not None:
        changes["smtp"] = dataclasses.replace(config.smtp, personality=personality)
    if config.imap is not None and "personality" in _field_names(type(config.imap)):
        changes["imap"] = dataclasses.replace(config.imap, personality=personality)
    return dataclasses.replace(config, **changes)


def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))
