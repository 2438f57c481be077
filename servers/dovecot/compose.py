"""Configs for `compose/docker-compose.yml`: one Dovecot per scenario family, for QA.

    python -m servers.dovecot.compose certs      # certs/ca.pem + the leaves (kept if present)
    python -m servers.dovecot.compose generate   # compose/generated/<service>/dovecot.conf ...

The compose file stays declarative: every service runs the same image with
`/mailharness/dovecot.conf`, and this module writes that config (plus the
passwd-files and an empty mail dir) for each service from `SERVICES`, through
the same `render_config` the test backends use. Inside the container the
service's generated dir is `/mailharness` and `../certs` is `/certs`.

Every service uses host networking and listens on 127.0.0.1 only, on the fixed
ports listed in `SERVICES` (and in compose/README.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailharness.servers.dovecot.config import (
    DovecotConfig,
    Identity,
    InstancePaths,
    SSLMode,
    passwd_line,
    render_config,
)
from mailharness.servers.tlsversions import TLSProtocol

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "compose" / "generated"
DEFAULT_CERTS = REPO / "certs"
# Where compose mounts things inside each container.
CONTAINER_ROOT = Path("/mailharness")
CONTAINER_CERTS = Path("/certs")
# Unix sockets on a container-local path: some bind mounts (Docker Desktop's) cannot hold them.
CONTAINER_BASE_DIR = "/run/mailharness-dovecot"
# The image's nobody:nogroup.
MAIL_IDENTITY = Identity(65534, 65534)
CA_FILE = "ca.pem"


@dataclass(frozen=True, slots=True, kw_only=True)
class ComposeService:
    """One compose service: a scenario family on fixed loopback ports."""

    name: str
    summary: str
    imap_port: int | None  # plain/STARTTLS listener
    imaps_port: int | None  # implicit TLS listener
    cert: str | None = "trusted"  # certificate variant file stem in certs/
    settings: dict[str, Any] = field(default_factory=dict)

    def config(self) -> DovecotConfig:
        cert = None
        if self.cert is not None:
            cert = _CertInContainer(
                CONTAINER_CERTS / f"{self.cert}.crt", CONTAINER_CERTS / f"{self.cert}.key"
            )
        return DovecotConfig(
            cert=cert,
            imap=self.imap_port is not None,
            imaps=self.imaps_port is not None,
            **self.settings,
        )

    @property
    def ports(self) -> dict[str, int]:
        ports = {"imap": self.imap_port, "imaps": self.imaps_port}
        return {name: port for name, port in ports.items() if port is not None}


@dataclass(frozen=True, slots=True)
class _CertInContainer:
    cert_path: Path
    key_path: Path


SERVICES = (
    ComposeService(
        name="dovecot-healthy",
        summary="what a connector should meet: STARTTLS and implicit TLS, TLS 1.2+, trusted cert, "
        "no credentials before TLS",
        imap_port=10143,
        imaps_port=10993,
        # As the `healthy` scenario: Dovecot's own default (the container sees clients from
        # the bridge, never its own address, so nothing counts as secured without TLS).
        settings={"disable_plaintext_auth": True},
    ),
    ComposeService(
        name="dovecot-starttls-required",
        summary="LOGINDISABLED until STARTTLS; no login of any kind before TLS",
        imap_port=11143,
        imaps_port=11993,
        settings={"ssl": SSLMode.REQUIRED, "disable_plaintext_auth": True},
    ),
    ComposeService(
        name="dovecot-tls10",
        summary="a legacy server that still accepts TLS 1.0 and 1.1 (weak ciphers allowed)",
        imap_port=12143,
        imaps_port=12993,
        settings={
            "ssl_min_protocol": TLSProtocol.TLS1_0.openssl,
            "extra": ("ssl_cipher_list = ALL:@SECLEVEL=0",),
        },
    ),
    ComposeService(
        name="dovecot-cert-expired",
        summary="presents a certificate that expired 30 days ago",
        imap_port=13143,
        imaps_port=13993,
        cert="expired",
    ),
    ComposeService(
        name="dovecot-cert-self-signed",
        summary="presents a self-signed certificate",
        imap_port=14143,
        imaps_port=14993,
        cert="self-signed",
    ),
    ComposeService(
        name="dovecot-cert-wrong-host",
        summary="presents a certificate for another host name",
        imap_port=15143,
        imaps_port=15993,
        cert="wrong-host",
    ),
    ComposeService(
        name="dovecot-quota-full",
        summary="a 1 KiB quota: any real APPEND gets NO [OVERQUOTA]",
        imap_port=16143,
        imaps_port=16993,
        settings={"quota_storage": 1024},
    ),
    ComposeService(
        name="dovecot-plaintext",
        summary="no TLS at all: plaintext IMAP only",
        imap_port=17143,
        imaps_port=None,
        cert=None,
        settings={"ssl": SSLMode.NO},
    ),
)
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
    commands.add_parser("list", help="print each service, its ports and what it is for")
    args = parser.parse_args(argv)
    if args.command == "list":
        for service in SERVICES:
            ports = ", ".join(f"{k} 127.0.0.1:{v}" for k, v in service.ports.items())
            print(f"{service.name:28} {ports:44} {service.summary}")
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
