"""Scenario files: a customer's setup in TOML, checked field by field, and their reference.

`load_toml` reads a file into a `Scenario`: a catalog scenario (`base`) with the
file's changes. Every value is checked against the type of the field it sets
(from the model's own annotations), and a wrong one is an error naming the field,
the value and what is allowed, before anything is served.

`reference_markdown()` is docs/scenario-files.md: every field, its type, its
default and its meaning, generated from the same model (the meanings are the
comments beside the fields in the source), so the reference cannot drift:

    python -m mailharness.scenario_files > docs/scenario-files.md
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mailharness import values
from mailharness.certs import CertVariant
from mailharness.scenarios import Scenario, with_personality
from mailharness.schedule import EVENT_TYPES
from mailharness.server import MailConfig
from mailharness.servers.accounts import User
from mailharness.servers.errors import ConfigError, choice_error
from mailharness.servers.faults import toxics
from mailharness.servers.imap import IMAPSettings
from mailharness.servers.listeners import Security
from mailharness.servers.personality import PERSONALITIES
from mailharness.servers.smtp import SMTPSettings

USERS_MODES = ("add", "replace")
#: The file's own top-level fields: (name, type shown, default shown, meaning).
TOP_LEVEL: tuple[tuple[str, str, str, str], ...] = (
    ("name", "string", "the file's stem", "the scenario's name in output and reports"),
    (
        "base",
        "string: a catalog scenario",
        '"healthy"',
        "the catalog scenario this file changes (`mailharness scenarios` lists them)",
    ),
    ("requirement", "string", "the base's", "the connector requirement it exercises"),
    (
        "expectation",
        "string",
        "not stated",
        "what a correct client sees against this setup, in your words (shown by serve; the "
        "base's own expectation no longer applies)",
    ),
    (
        "personality",
        "string: " + ", ".join(PERSONALITIES),
        "the base's",
        "whose wording and limits both protocols use",
    ),
    (
        "cert",
        "string: " + ", ".join(v.value for v in CertVariant),
        "the base's",
        "the certificate every TLS listener serves, faults included unless a fault sets "
        "its own `cert`",
    ),
    (
        "users_mode",
        "string: add or replace",
        "required with [[users]]",
        '"add": the base\'s users and the file\'s; "replace": only the file\'s',
    ),
    ("users", "list of [[users]] tables", "the base's users", "accounts; see [[users]]"),
    (
        "schedule",
        "list of [[schedule]] tables",
        "the base's schedule",
        "what the server does over time; replaces the base's; see [[schedule]]",
    ),
    ("imap", "[imap] table", "the base's", "IMAP settings; see [imap]"),
    ("smtp", "[smtp] table", "the base's", "SMTP settings; see [smtp]"),
    (
        "serve",
        "table",
        "none",
        "where `mailharness serve` listens (host, port_base, ports, backend, fronts; see "
        "docs/serve.md); the pytest fixtures ignore it",
    ),
)
PROTOCOL_EXTRAS: tuple[tuple[str, str, str, str], ...] = (
    ("enabled", "true or false", "true", "false serves no listener of this protocol at all"),
    (
        "listeners",
        "list of strings: none, starttls, implicit",
        '["starttls", "implicit"]',
        "which listeners to open (none: plaintext, no TLS offered)",
    ),
    (
        "faults",
        "list of [[PROTOCOL.faults]] tables",
        "the base's",
        "network and TLS faults before the listeners, added to the base's; see the faults section",
    ),
)


# --- the model's own words -------------------------------------------------------------
_FIELD = re.compile(r"^\s+(\w+)\s*:\s*[^=]+(=.*)?$")


def field_meanings(cls: type) -> dict[str, str]:
    """Each field's meaning: the comment above it (`#` or `#:`) or beside it, one line."""
    meanings: dict[str, str] = {}
    block: list[str] = []
    names = {f.name for f in dataclasses.fields(cls)}
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#:").strip())
            continue
        match = _FIELD.match(line)
        top = line.startswith("    ") and not line[4:5].isspace()  # a class-body line
        if match and match.group(1) in names and top:
            inline = line.split("  # ", 1)[1].strip() if "  # " in line else ""
            text = " ".join(part for part in (*block, inline) if part)
            meanings[match.group(1)] = text
        block = []
    return meanings


def _table(where: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}={value!r}: expected a table")
    return value


def _tables(where: str, value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{where}={value!r}: expected a list of tables ([[{where}]])")
    return value


#: The one list of fault kinds (servers.faults.toxics), as scenario files name them.
EVENT_KINDS: dict[str, type] = {cls.kind: cls for cls in EVENT_TYPES}


def _string(where: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}={value!r}: expected a string")
    return value


# --- loading ------------------------------------------------------------------------------
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
        users_mode = "add"     # (top level) the base's users and these
        [[users]]
        address = "qa@acme.test"
        password = "qa-password"
        quota_bytes = 1000

    Every unknown field, and every value of the wrong type, is an error naming the
    field and what is allowed (docs/scenario-files.md lists them all).
    """
    import tomllib  # imported by a file's first load: a catalog scenario needs none

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    values.check_keys(str(path), data, [row[0] for row in TOP_LEVEL])
    where = f"{path}:"
    base = catalog[_string(f"{where} base", data.get("base", "healthy"))]
    config = base.config
    changes: dict[str, Any] = {}
    if "cert" in data:
        changes["cert"] = values.convert(f"{where} cert", data["cert"], CertVariant)
    changes.update(_users(where, data, config))
    if "schedule" in data:
        changes["schedule"] = tuple(
            values.build_kind(f"{where} schedule[{i}]", spec, EVENT_KINDS)
            for i, spec in enumerate(_tables("schedule", data["schedule"]))
        )
    # The base's faults were given its certificate when it was built: with a new `cert`
    # they take that one instead, as a TLS fault the file adds with no `cert` of its
    # own does (MailConfig fills it in).
    faults = {
        k: tuple(_recert(f, config) if "cert" in data else f for f in v)
        for k, v in config.faults.items()
    }
    for protocol in ("imap", "smtp"):
        if protocol in data:
            _protocol(where, protocol, _table(protocol, data[protocol]), config, changes, faults)
    changes["faults"] = faults
    try:
        config = dataclasses.replace(config, **changes)
    except ConfigError as error:
        raise ConfigError(f"{where} {error}") from None
    personality = _string(f"{where} personality", data.get("personality", base.personality))
    if personality != base.personality or "personality" in data:
        config = with_personality(config, personality)
    return dataclasses.replace(
        base,
        name=_string(f"{where} name", data.get("name", path.stem)),
        requirement=_string(f"{where} requirement", data.get("requirement", base.requirement)),
        client_sees=_string(
            f"{where} expectation",
            data.get(
                "expectation",
                f"not stated by {path.name} (set `expectation` in it: its changes to "
                f"{base.name!r} may change what a client sees); {base.name!r} alone: "
                f"{base.client_sees}",
            ),
        ),
        personality=personality,
        config=config,
        expect=(),  # a customer's changes void the base's checked expectations
    )


def _recert(fault: Any, base: MailConfig) -> Any:
    """A base fault that only carried the base's certificate by inheritance inherits anew."""
    if isinstance(fault, toxics.TLSVersion) and fault.cert == CertVariant.parse(base.cert).value:
        return dataclasses.replace(fault, cert=None)
    return fault


def _users(where: str, data: Mapping[str, Any], config: MailConfig) -> dict[str, Any]:
    if "users" not in data:
        if "users_mode" in data:
            raise ConfigError(f"{where} users_mode is set but no [[users]] follow")
        return {}
    if "users_mode" not in data:
        raise ConfigError(
            f'{where} [[users]] needs users_mode = "add" (the base\'s users and these) or '
            '"replace" (only these)'
        )
    mode = data["users_mode"]
    if mode not in USERS_MODES:
        raise choice_error(f"{where} users_mode", mode, USERS_MODES)
    users = tuple(
        values.build(f"{where} users[{i}]", User, spec)
        for i, spec in enumerate(_tables("users", data["users"]))
    )
    if mode == "add":
        taken = {u.login for u in config.users}
        for user in users:
            if user.login in taken:
                raise ConfigError(
                    f"{where} users: {user.login!r} is already a user of the base; "
                    'use users_mode = "replace" to redefine it'
                )
        users = (*config.users, *users)
    return {"users": users}


def _protocol(
    where: str,
    protocol: str,
    table: Mapping[str, Any],
    config: MailConfig,
    changes: dict[str, Any],
    faults: dict[str, tuple[Any, ...]],
) -> None:
    where = f"{where} [{protocol}]"
    settings_cls = IMAPSettings if protocol == "imap" else SMTPSettings
    current = getattr(config, protocol) or settings_cls()
    settable = [n for n in values.annotated(settings_cls) if n not in values.PYTHON_ONLY]
    values.check_keys(where, table, (*settable, *(row[0] for row in PROTOCOL_EXTRAS)))
    enabled = values.convert(f"{where} enabled", table.get("enabled", True), bool)
    if not enabled:
        changes[protocol] = None
        return
    hints = values.hints(settings_cls)
    settings = {
        k: values.convert(f"{where} {k}", v, hints[k]) for k, v in table.items() if k in hints
    }
    try:
        changes[protocol] = dataclasses.replace(current, **settings)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    if "listeners" in table:
        listeners = values.convert(f"{where} listeners", table["listeners"], tuple[Security, ...])
        changes[f"{protocol}_listeners"] = listeners
    for index, spec in enumerate(_tables(f"{protocol}.faults", table.get("faults", []))):
        selector = spec.get("listener", protocol)
        rest = {k: v for k, v in spec.items() if k != "listener"}
        fault = values.build_kind(f"{where} faults[{index}]", rest, toxics.FAULT_KINDS)
        faults[selector] = (*faults.get(selector, ()), fault)


# --- the reference --------------------------------------------------------------------------
def _default(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return repr(value.value)
    if isinstance(value, tuple):
        return "[" + ", ".join(repr(getattr(v, "value", v)) for v in value) + "]"
    return repr(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(cls: type, skip: Iterable[str] = ()) -> list[str]:
    hints, meanings = values.hints(cls), field_meanings(cls)
    lines = ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        kind = values.PYTHON_ONLY.get(field.name) or values.describe(hints[field.name])
        lines.append(
            f"| `{field.name}` | {_cell(kind)} | `{_cell(_default(field))}` | "
            f"{_cell(meanings.get(field.name, ''))} |"
        )
    return [*lines, ""]


def _fixed_rows(rows: Iterable[tuple[str, str, str, str]]) -> list[str]:
    lines = ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{n}` | {_cell(t)} | {_cell(d)} | {_cell(m)} |" for n, t, d, m in rows]
    return [*lines, ""]


def _first_line(cls: type) -> str:
    return (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")


def reference_markdown() -> str:
    """docs/scenario-files.md: every field a scenario file may set."""
    lines = [
        "# Scenario files: field reference",
        "",
        "Generated from the model by `python -m mailharness.scenario_files`; do not edit by",
        "hand (`tests/test_scenario_files.py` keeps it current). A scenario file is TOML:",
        "`mailharness serve --scenario FILE.toml`, or",
        '`@pytest.mark.mail_scenario("FILE.toml")`. Every field is optional. An unknown field',
        "is an error naming the allowed ones; a value of the wrong type is an error naming",
        "the field, the value and what is allowed. A TOML value cannot be `none`: leave a",
        "field out to keep its default.",
        "",
        "## Top level",
        "",
        *_fixed_rows(TOP_LEVEL),
        "## [imap]",
        "",
        f"{_first_line(IMAPSettings)} Besides these: `enabled`, `listeners`, `faults`.",
        "",
        *_fixed_rows(PROTOCOL_EXTRAS),
        *_rows(IMAPSettings),
        "## [smtp]",
        "",
        f"{_first_line(SMTPSettings)} Besides these: `enabled`, `listeners`, `faults`.",
        "",
        *_rows(SMTPSettings),
        "## [[users]]",
        "",
        f'{_first_line(User)} With `users_mode = "add"` they join the base\'s users '
        "(alice@example.test and bob@example.test for most scenarios); with "
        '`"replace"` they are the only ones.',
        "",
        *_rows(User),
        "## [[imap.faults]] and [[smtp.faults]]",
        "",
        "Faults stand before listeners (a fault front); `listener` picks which: "
        '"imap/implicit", "imap/starttls", "imap/none" (likewise smtp/...), the protocol '
        '(default) or "*". `kind` picks the fault; its fields follow.',
        "",
    ]
    for kind, cls in toxics.FAULT_KINDS.items():
        lines += [f'### kind = "{kind}"', "", _first_line(cls), "", *_rows(cls)]
    lines += [
        "## [[schedule]]",
        "",
        "What the server does over time, run from start to stop under `serve` and the",
        "pytest fixtures alike. A file's schedule replaces the base's.",
        "",
    ]
    for kind, cls in EVENT_KINDS.items():
        lines += [f'### kind = "{kind}"', "", _first_line(cls), "", *_rows(cls)]
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> int:
    sys.stdout.write(reference_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
