"""`compose/docker-compose.yml`, generated from the scenario catalog: real Dovecot for QA.

    python -m mailharness.servers.dovecot.compose compose    # rewrite compose/docker-compose.yml
    python -m mailharness.servers.dovecot.compose certs      # certs/ca.pem + the leaves (kept)
    python -m mailharness.servers.dovecot.compose generate   # compose/generated/<service>/...
    python -m mailharness.servers.dovecot.compose list       # services, ports; scenarios left out

One source: every catalog scenario proven on Dovecot (`backends` has "docker") becomes
a service `dovecot-<scenario>` whose `dovecot.conf` is what `MailServer(backend=
"docker")` runs for it (`harness.dovecot_backend.dovecot_config`), IMAP and submission
(SMTP) both, unless the scenario needs what a lone Dovecot cannot do: a fault front
(refuse, drop, hang...), a run-time step (`prepare`), or the MTA behind submission.
A TLS-version pin is Dovecot's own `ssl_min_protocol` plus an OpenSSL `MaxProtocol`
(see `config.openssl_conf`), so `dovecot-tls10-only` speaks TLS 1.0 and nothing else,
as `tls10-only` does. `list` prints every scenario left out, with the reason; serve
those with `mailharness serve --scenario NAME` instead. A scenario whose server is
the same as an earlier one's (a client-side mistake against `healthy`) is not repeated.

This is the one module of servers/ that reads the catalog (harness/): compose is made
from it. Every service runs the same image with host networking on fixed loopback ports:
service number k (from 0) listens on 10000 + 1000*k + 143 (IMAP, STARTTLS), + 993 (IMAPS),
+ 587 (submission, STARTTLS) and + 465 (submissions), and relays what it accepts to
127.0.0.1 at + 25 (run an SMTP sink there to see the mail). Where the scenario refuses
credentials before TLS, Dovecot listens on 127.0.0.2 so loopback does not count as
secured (see harness.dovecot_backend). Inside a container the service's generated dir is
`/mailharness` and `../certs` is `/certs`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mailharness.catalog import CATALOG
from mailharness.dovecot_backend import dovecot_config, not_applicable
from mailharness.scenarios import Scenario
from mailharness.servers.dovecot.config import (
    DovecotConfig,
    Identity,
    InstancePaths,
    openssl_conf,
    passwd_line,
    render_config,
)
from mailharness.servers.faults import TLSVersion
from mailharness.servers.listeners import Security
from mailharness.servers.tlsversions import TLSProtocol

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "compose" / "generated"
DEFAULT_CERTS = REPO / "certs"
COMPOSE_FILE = REPO / "compose" / "docker-compose.yml"
# Where compose mounts things inside each container.
CONTAINER_ROOT = Path("/mailharness")
CONTAINER_CERTS = Path("/certs")
# Unix sockets on a container-local path: some bind mounts (Docker Desktop's) cannot hold them.
CONTAINER_BASE_DIR = "/run/mailharness-dovecot"
# The image's nobody:nogroup.
MAIL_IDENTITY = Identity(65534, 65534)
CA_FILE = "ca.pem"
FIRST_PORT_BLOCK = 10_000
PORT_BLOCK = 1_000
# Listener -> offset in the service's port block (the well-known port's last digits).
PORT_OFFSETS = {"imap": 143, "imaps": 993, "submission": 587, "submissions": 465}
RELAY_OFFSET = 25
# A pinned TLS version as Dovecot's min/max protocol; SSL 3.0 is beyond OpenSSL 3.
#: The pinned versions Dovecot (OpenSSL 3) can serve: every TLS version, not SSLv3.
_SERVABLE = {p.value: p for p in TLSProtocol if p is not TLSProtocol.SSLV3}


@dataclass(frozen=True, slots=True)
class _CertInContainer:
    cert_path: Path
    key_path: Path


class ContainerCerts:
    """What `dovecot_config` asks of a CA, answered with paths inside the container."""

    def server_cert(self, variant: object) -> _CertInContainer:
        name = getattr(variant, "value", variant)
        return _CertInContainer(CONTAINER_CERTS / f"{name}.crt", CONTAINER_CERTS / f"{name}.key")


@dataclass(frozen=True, slots=True, kw_only=True)
class ComposeService:
    """One compose service: a catalog scenario on Dovecot, on fixed loopback ports."""

    name: str
    scenario: str
    summary: str
    block: int  # the first port of its block: 10000, 11000, ...
    dovecot: DovecotConfig

    @property
    def cert(self) -> str | None:
        if self.dovecot.cert is None:
            return None
        return Path(self.dovecot.cert.cert_path).stem

    @property
    def host(self) -> str:
        return self.dovecot.host

    @property
    def ports(self) -> dict[str, int]:
        served = {
            "imap": self.dovecot.imap,
            "imaps": self.dovecot.imaps,
            "submission": self.dovecot.submission,
            "submissions": self.dovecot.submissions,
        }
        return {name: self.block + PORT_OFFSETS[name] for name, on in served.items() if on}

    def config(self) -> DovecotConfig:
        return self.dovecot


def _pinned_version(scenario: Scenario) -> tuple[str | None, list[str]]:
    """The one TLS version the scenario's fronts pin on every TLS listener, and the
    reasons a lone Dovecot cannot do what its fronts do."""
    config = scenario.config
    reasons: list[str] = []
    versions: set[str] = set()
    unpinned = False
    fronted: dict[str, list[str]] = {}  # fault kind -> listeners it stands before
    for protocol in ("imap", "smtp"):
        if getattr(config, protocol) is None:
            continue
        for security in config.securities(protocol):
            faults = config.faults_for(protocol, security) or ()
            pins = [f for f in faults if isinstance(f, TLSVersion)]
            for fault in faults:
                if not isinstance(fault, TLSVersion):
                    listeners = fronted.setdefault(type(fault).__name__, [])
                    listeners.append(f"{protocol}/{security.value}")
            if pins:
                versions.add(pins[0].version)
            elif security is not Security.NONE:
                unpinned = True
    for kind, listeners in fronted.items():
        reasons.append(
            f"a fault front ({kind} before {', '.join(dict.fromkeys(listeners))}), which a "
            "lone Dovecot has no setting for"
        )
    if not versions:
        return None, reasons
    version = versions.pop()
    if versions or unpinned:
        reasons.append("TLS versions differ between listeners: Dovecot has one for all")
    if version not in _SERVABLE and version != "modern":
        reasons.append(f"TLS version {version!r}: OpenSSL 3 cannot serve it")
    return version, reasons


def _mapping(scenario: Scenario, block: int) -> tuple[DovecotConfig | None, list[str]]:
    """The Dovecot config that serves `scenario` as the catalog does, or why none can."""
    config = scenario.config
    version, reasons = _pinned_version(scenario)
    reasons += not_applicable(config)
    if scenario.prepare is not None:
        reasons.append("its state is made at run time (prepare), after the server starts")
    if config.smtp is not None and config.smtp.allowed_networks is not None:
        reasons.append("its SMTP allowlist is the MTA's behind submission, and compose has none")
    if config.schedule:
        reasons.append("it has a schedule (switched at run time)")
    if reasons:
        return None, reasons
    bare = dataclasses.replace(config, faults={})
    relay = block + RELAY_OFFSET if config.smtp is not None else None
    dovecot = dovecot_config(bare, ContainerCerts(), relay)  # type: ignore[arg-type]
    if version is not None and version != "modern":
        pinned = _SERVABLE[version]
        dovecot = dataclasses.replace(
            dovecot,
            ssl_min_protocol=pinned.openssl,
            ssl_max_protocol=pinned.openssl,
            ssl_cipher_list="ALL:@SECLEVEL=0" if pinned.legacy else dovecot.ssl_cipher_list,
        )
    return dovecot, []


def catalog_services() -> tuple[tuple[ComposeService, ...], dict[str, str]]:
    """The services, in catalog order, and the scenarios left out with why."""
    services: list[ComposeService] = []
    left_out: dict[str, str] = {}
    for scenario in CATALOG.values():
        if "docker" not in scenario.backends:
            continue
        block = FIRST_PORT_BLOCK + PORT_BLOCK * len(services)
        dovecot, reasons = _mapping(scenario, block)
        if dovecot is None:
            left_out[scenario.name] = "; ".join(reasons)
            continue
        same = next((s for s in services if _same_server(s, dovecot)), None)
        if same is not None:
            left_out[scenario.name] = f"the same server as {same.name} (the client differs)"
            continue
        services.append(
            ComposeService(
                name=f"dovecot-{scenario.name}",
                scenario=scenario.name,
                summary=scenario.server,
                block=block,
                dovecot=dovecot,
            )
        )
    return tuple(services), left_out


def _same_server(service: ComposeService, dovecot: DovecotConfig) -> bool:
    relay = service.block + RELAY_OFFSET if dovecot.submission_relay_port is not None else None
    moved = dataclasses.replace(dovecot, submission_relay_port=relay)
    return moved == service.dovecot


SERVICES, LEFT_OUT = catalog_services()
SERVICES_BY_NAME = {service.name: service for service in SERVICES}


def cert_variants() -> list[str]:
    return sorted({s.cert for s in SERVICES if s.cert is not None})


def ensure_certs(certs: Path = DEFAULT_CERTS, *, force: bool = False) -> bool:
    """Write the CA and every leaf the services use; keep them if all are there.

    Returns True if a new CA was made (QA must trust the new `ca.pem`).
    """
    needed = [certs / CA_FILE]
    for variant in cert_variants():
        needed += [certs / f"{variant}.crt", certs / f"{variant}.key"]
    if not force and all(path.exists() for path in needed):
        return False
    from mailharness.certs import MailCA

    certs.mkdir(parents=True, exist_ok=True)
    with MailCA() as ca:
        for variant in cert_variants():
            ca.server_cert(variant)
        for source in ca.directory.iterdir():
            shutil.copy2(source, certs / source.name)
    return True


def render_service(service: ComposeService) -> str:
    """The service's whole `dovecot.conf`, with container paths."""
    text = render_config(
        service.config(), InstancePaths(CONTAINER_ROOT), MAIL_IDENTITY, service.ports
    )
    return text.replace(
        f"\nbase_dir = {CONTAINER_ROOT / 'run'}\n", f"\nbase_dir = {CONTAINER_BASE_DIR}\n", 1
    )


def generate(out: Path = DEFAULT_OUT, services: Sequence[ComposeService] = SERVICES) -> None:
    """Write each service's config, passwd-files and mail dir under `out/<service>/`.

    Existing mail and state are replaced: `generate` is also "reset everything".
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / ".gitignore").write_text("# Written by python -m servers.dovecot.compose\n*\n")
    for service in services:
        root = out / service.name
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(mode=0o755)
        paths = InstancePaths(CONTAINER_ROOT)
        (root / "dovecot.conf").write_text(render_service(service))
        capped = openssl_conf(service.config())
        if capped is not None:  # the TLS version cap (`import_environment OPENSSL_CONF`)
            (root / "openssl.cnf").write_text(capped)
        (root / "state").mkdir()
        users = root / "users"
        users.mkdir(mode=0o711)  # the entry point makes it root:dovecot 0750
        for user in service.config().users:
            (users / user.login.lower()).write_text(passwd_line(user, MAIL_IDENTITY, paths))
            os.chmod(users / user.login.lower(), 0o644)
        mail = root / "mail"
        mail.mkdir()
        # Dovecot creates each home as the mail user (65534): the dir must let it.
        os.chmod(mail, 0o1777)


def compose_yaml(services: Sequence[ComposeService] = SERVICES) -> str:
    """compose/docker-compose.yml: one service per catalog scenario Dovecot can serve."""
    lines = [
        "# Real Dovecot for QA, one service per catalog scenario it can serve. See README.md.",
        "# GENERATED from the scenario catalog by",
        "#   python -m mailharness.servers.dovecot.compose compose",
        "# (tests/dovecot/test_compose.py keeps it current); do not edit by hand.",
        "#",
        "#   python -m mailharness.servers.dovecot.image                # the image, once",
        "#   python -m mailharness.servers.dovecot.compose generate     # certs + configs",
        "#   docker-compose up dovecot-healthy     # or: docker compose up dovecot-healthy",
        "#",
        "# Every service: the same image, host networking, loopback only, fixed ports; the",
        "# mail it accepts is relayed to the relay port (run an SMTP sink there to see it).",
        'version: "2.4"',
        "",
        "x-dovecot: &dovecot",
        "  image: ${MAILHARNESS_DOVECOT_IMAGE:-mailharness/dovecot:local}",
        "  network_mode: host",
        '  command: ["/mailharness/dovecot.conf"]',
        "  environment:",
        "    MAILHARNESS_USERS_DIR: /mailharness/users",
        "  # Dovecot's own SIGTERM shutdown takes ~3 s; it needs no more.",
        "  stop_grace_period: 10s",
        "",
        "services:",
    ]
    for service in services:
        ports = " ".join(f"{name} {service.host}:{port}" for name, port in service.ports.items())
        relay = service.dovecot.submission_relay_port
        summary = f"scenario {service.scenario}: {service.summary}"
        lines += [f"  {service.name}:", *_wrap_comment(summary, "    # ")]
        lines.append(f"    # {ports}" + (f" relay 127.0.0.1:{relay}" if relay else ""))
        lines += [
            "    <<: *dovecot",
            "    volumes:",
            f"      - ./generated/{service.name}:/mailharness",
            "      - ../certs:/certs:ro",
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


def _wrap_comment(text: str, prefix: str, width: int = 96) -> list[str]:
    lines, line = [], prefix.rstrip()
    for word in text.split():
        if len(line) + 1 + len(word) > width and line != prefix.rstrip():
            lines.append(line)
            line = prefix.rstrip()
        line += " " + word
    return [*lines, line]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m servers.dovecot.compose", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    certs_cmd = commands.add_parser("certs", help="write the CA and leaves to the certs dir")
    certs_cmd.add_argument("--certs", type=Path, default=DEFAULT_CERTS)
    certs_cmd.add_argument("--force", action="store_true", help="make a new CA even if present")
    gen = commands.add_parser("generate", help="write compose/generated/ (and certs if missing)")
    gen.add_argument("--out", type=Path, default=DEFAULT_OUT)
    gen.add_argument("--certs", type=Path, default=DEFAULT_CERTS)
    gen.add_argument("services", nargs="*", help="only these services (default: all)")
    commands.add_parser("list", help="each service, its ports; the scenarios left out, and why")
    write = commands.add_parser("compose", help="rewrite compose/docker-compose.yml")
    write.add_argument("--file", type=Path, default=COMPOSE_FILE)
    args = parser.parse_args(argv)
    if args.command == "list":
        for service in SERVICES:
            ports = ", ".join(f"{k} {service.host}:{v}" for k, v in service.ports.items())
            print(f"{service.name:36} {ports}")
        print("\nleft out (serve them with `mailharness serve --scenario NAME`):")
        for name, reason in LEFT_OUT.items():
            print(f"  {name}: {reason}")
        return 0
    if args.command == "compose":
        args.file.write_text(compose_yaml())
        print(f"wrote {len(SERVICES)} services to {args.file}")
        return 0
    if args.command == "certs":
        made = ensure_certs(args.certs, force=args.force)
        print(f"{'new CA' if made else 'kept'}: {args.certs / CA_FILE}")
        return 0
    unknown = [name for name in args.services if name not in SERVICES_BY_NAME]
    if unknown:
        print(f"unknown service(s): {', '.join(unknown)}; known: {', '.join(SERVICES_BY_NAME)}")
        return 2
    chosen = [SERVICES_BY_NAME[name] for name in args.services] or list(SERVICES)
    if ensure_certs(args.certs):
        print(f"new CA: trust {args.certs / CA_FILE}")
    generate(args.out, chosen)
    print(f"generated {len(chosen)} service config(s) under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
