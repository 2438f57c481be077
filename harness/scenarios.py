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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailharness.certs import MailCA
from mailharness.profiles import ClientProfile, Outcome
from mailharness.server import MailConfig, MailServer
from mailharness.servers.accounts import User
from mailharness.servers.errors import ConfigError, choice_error, parse_choice
from mailharness.servers.listeners import Security

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


@dataclass(frozen=True, slots=True, kw_only=True)
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


@dataclass(frozen=True, slots=True, kw_only=True)
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
    """Scenarios by name, in catalog order; unknown names suggest the closest ones."""

    def __init__(self, scenarios: Iterable[Scenario]) -> None:
        self._by_name: dict[str, Scenario] = {}
        for scenario in scenarios:
            if scenario.name in self._by_name:
                raise ConfigError(f"scenario name {scenario.name!r} is used twice")
            self._by_name[scenario.name] = scenario

    def __getitem__(self, name: str) -> Scenario:
        try:
            return self._by_name[name]
        except KeyError:
            import difflib  # a mistake's hint only: kept out of start-up

            close = difflib.get_close_matches(name, self._by_name, n=3, cutoff=0.5)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            raise ConfigError(
                f"scenario={name!r}: no such scenario{hint}; `mailharness scenarios` lists "
                f"all {len(self._by_name)}"
            ) from None

    def __iter__(self) -> Any:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def family(self, family: Family | str) -> list[Scenario]:
        wanted = family if isinstance(family, Family) else _family(family)
        return [s for s in self._by_name.values() if s.family is wanted]


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


# --- TOML: a customer's setup, as QA writes it --------------------------------------------
TOML_FIELDS = ("name", "base", "requirement", "personality", "cert", "users", "imap", "smtp")
PROTOCOL_TABLE_EXTRAS = ("enabled", "listeners", "faults")


def _check_keys(where: str, table: Mapping[str, Any], allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    for key in table:
        if key not in allowed:
            raise choice_error(f"{where}: field", key, allowed)


def _fault(where: str, spec: Mapping[str, Any]) -> Any:
    from mailharness.servers.faults import toxics

    kinds = {_kebab(cls.__name__): cls for cls in toxics.FAULT_TYPES}
    if "kind" not in spec:
        raise ConfigError(f"{where}: a fault needs kind = one of {', '.join(map(repr, kinds))}")
    params = {k: v for k, v in spec.items() if k != "kind"}
    cls = kinds.get(str(spec["kind"]))
    if cls is None:
        raise choice_error(f"{where}: kind", spec["kind"], kinds)
    _check_keys(f"{where} ({spec['kind']})", params, _field_names(cls))
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})


def _kebab(name: str) -> str:
    out = "".join("-" + c.lower() if c.isupper() else c for c in name).lstrip("-")
    return out.replace("t-l-s", "tls")


def _settings(where: str, current: Any, table: Mapping[str, Any]) -> Any:
    from mailharness.servers.ratelimit import RateLimit

    names = _field_names(type(current))
    _check_keys(where, table, (*names, *PROTOCOL_TABLE_EXTRAS))
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key in PROTOCOL_TABLE_EXTRAS:
            continue
        if isinstance(value, dict) and key.endswith("rate"):
            _check_keys(f"{where}.{key}", value, ("count", "per_seconds"))
            value = RateLimit(**value)
        elif isinstance(value, list):
            value = tuple(value)
        changes[key] = value
    try:
        return dataclasses.replace(current, **changes)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from None


def load_toml(path: str | Path, catalog: Mapping[str, Scenario]) -> Scenario:
    """A scenario from a TOML file: a catalog scenario (`base`) with a customer's changes.

        name = "acme-exchange"
        base = "tls10-only"
        personality = "outlook"
        cert = "self-signed"
        [smtp]
        listeners = ["starttls"]
        size_limit = 10_000_000
        [[imap.faults]]
        listener = "imap/implicit"
        kind = "latency"
        ms = 200
        [[users]]
        address = "qa@acme.test"
        password = "qa-password"

    Every unknown field is an error naming the field and the allowed ones.
    """
    import tomllib  # only a TOML scenario needs it

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    _check_keys(str(path), data, TOML_FIELDS)
    base = catalog[str(data.get("base", "healthy"))]
    config = base.config
    changes: dict[str, Any] = {}
    if "cert" in data:
        changes["cert"] = data["cert"]
    if "users" in data:
        user_fields = _field_names(User)
        users = []
        for index, spec in enumerate(data["users"]):
            _check_keys(f"{path}: users[{index}]", spec, user_fields)
            values: dict[str, Any] = {
                k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()
            }
            users.append(User(**values))
        changes["users"] = tuple(users)
    faults = {k: tuple(v) for k, v in config.faults.items()}
    for protocol in ("imap", "smtp"):
        table = data.get(protocol)
        if table is None:
            continue
        where = f"{path}: [{protocol}]"
        if table.get("enabled", True) is False:
            changes[protocol] = None
            continue
        current = getattr(config, protocol) or getattr(MailConfig(), protocol)
        changes[protocol] = _settings(where, current, table)
        if "listeners" in table:
            changes[f"{protocol}_listeners"] = tuple(table["listeners"])
        for index, spec in enumerate(table.get("faults", [])):
            listener = spec.get("listener", protocol)
            rest = {k: v for k, v in spec.items() if k != "listener"}
            fault = _fault(f"{where} faults[{index}]", rest)
            faults[listener] = (*faults.get(listener, ()), fault)
    changes["faults"] = faults
    config = dataclasses.replace(config, **changes)
    personality = str(data.get("personality", base.personality))
    if personality != base.personality or "personality" in data:
        config = with_personality(config, personality)
    return dataclasses.replace(
        base,
        name=str(data.get("name", path.stem)),
        requirement=str(data.get("requirement", base.requirement)),
        personality=personality,
        config=config,
        expect=(),  # a customer's changes void the base's checked expectations
    )
