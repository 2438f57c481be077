"""What a native Dovecot serves, and the `dovecot.conf` text that says so.

`DovecotConfig` is data (frozen, keyword-only, varied with
`dataclasses.replace`); `render_config` turns it plus the paths of one
running instance into a complete, self-contained config: nothing from
`/etc/dovecot` is read, so the machine's own Dovecot settings never leak in.

    config = DovecotConfig(cert=ca.server_cert(), auth_failure_delay=0)
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mailharness.servers.accounts import DEFAULT_USERS, User
from mailharness.servers.errors import ConfigError, choice_error, parse_choice
from mailharness.servers.listeners import DEFAULT_HOST, require_loopback
from mailharness.servers.tlsversions import TLSProtocol

# Without DH parameters Dovecot's DHE suites fail and TLS scanners misreport (ENVIRONMENT.md).
DEFAULT_SSL_DH = Path("/usr/share/dovecot/dh.pem")
# Dovecot's own default is 2 s; a test that checks a failed login should not wait that long.
DEFAULT_AUTH_FAILURE_DELAY = 0.0
# Dovecot's own default: ten connections per user and client address.
DEFAULT_MAX_USERIP_CONNECTIONS = 10
# Mail is owned by an existing unprivileged account, so nothing is added to /etc/passwd.
DEFAULT_MAIL_USER = "nobody"
DEFAULT_MAIL_GROUP = "nogroup"
# Characters that would break a passwd-file line (fields are ':'-separated, one per line).
_PASSWD_FORBIDDEN = (":", "\n", "\r", "\0")


class CertFiles(Protocol):
    """What Dovecot needs from a certificate: `harness.certs.ServerCert` is one."""

    @property
    def cert_path(self) -> Path: ...

    @property
    def key_path(self) -> Path: ...


class SSLMode(enum.Enum):
    """Dovecot's `ssl` setting."""

    NO = "no"  # no TLS at all: no imaps listener, no STARTTLS
    YES = "yes"  # TLS offered; plaintext login allowed unless disable_plaintext_auth
    REQUIRED = "required"  # no authentication of any kind before TLS

    @classmethod
    def parse(cls, value: str | SSLMode, field: str = "ssl") -> SSLMode:
        return parse_choice(cls, value, field)


# Dovecot's spelling of the versions its OpenSSL 3 can serve (not SSLv3).
SSL_PROTOCOLS = tuple(p.openssl for p in TLSProtocol if p is not TLSProtocol.SSLV3)
AUTH_MECHANISMS = ("plain", "login", "cram-md5", "digest-md5", "scram-sha-1", "scram-sha-256")


@dataclass(frozen=True, slots=True, kw_only=True)
class DovecotConfig:
    """One Dovecot instance's settings, mapped one to one onto `dovecot.conf`.

    `imap` and `imaps` choose which IMAP listeners exist (`imaps` needs
    `ssl != "no"`). Ports are never configured here: the process binds
    127.0.0.1:0 itself and hands the listening sockets to Dovecot, so there is
    no free-port guess to race with another xdist worker.

    `quota_storage` (bytes) and `quota_messages` turn the quota plugin on.
    `high_performance` keeps imap-login processes alive between connections
    (Dovecot's "high-performance mode": `service_count = 0`); the default is
    Dovecot's "high-security mode", one login process per connection.
    """

    host: str = DEFAULT_HOST
    users: tuple[User, ...] = DEFAULT_USERS
    imap: bool = True
    imaps: bool = True
    # Dovecot's submission service (SMTP on 587-style STARTTLS and 465-style implicit TLS
    # listeners), relaying every accepted message to `submission_relay_host:port`.
    submission: bool = False
    submissions: bool = False
    submission_relay_host: str = DEFAULT_HOST
    submission_relay_port: int | None = None
    # `submission_relay_trusted`: Dovecot then tells the relay who logged in (Postfix's
    # XCLIENT LOGIN=, when the relay advertises it), as a trusted MTA would want.
    submission_relay_trusted: bool = False
    # The name submission greets with and EHLO answers (Dovecot's `hostname`).
    hostname: str = "localhost"
    ssl: SSLMode = SSLMode.YES
    cert: CertFiles | None = None
    ssl_min_protocol: str = TLSProtocol.TLS1_2.openssl
    # Dovecot 2.3 has no maximum: it is set through an OpenSSL config file (OPENSSL_CONF,
    # `MaxProtocol`), which with ssl_min_protocol serves exactly one version if asked.
    ssl_max_protocol: str | None = None
    # E.g. "ALL:@SECLEVEL=0" for TLS 1.0/1.1 or a 1024-bit key; None: Dovecot's default.
    ssl_cipher_list: str | None = None
    ssl_dh: Path = DEFAULT_SSL_DH
    disable_plaintext_auth: bool = False
    auth_mechanisms: tuple[str, ...] = ("plain", "login")
    auth_failure_delay: float = DEFAULT_AUTH_FAILURE_DELAY
    # Dovecot delays logins from an address after failures there (2, 4, 8, 15 s, tracked by
    # its anvil process). Off by default: on loopback every test shares one address, so one
    # wrong-password test would slow every later login by seconds.
    auth_penalty: bool = False
    mail_max_userip_connections: int = DEFAULT_MAX_USERIP_CONNECTIONS
    quota_storage: int | None = None
    quota_messages: int | None = None
    # Load the quota plugin even without a global rule, for per-user rules (userdb
    # `quota_rule` fields in the passwd-file, see `passwd_line`).
    quota: bool = False
    login_greeting: str = "Dovecot ready."
    high_performance: bool = False
    mail_user: str = DEFAULT_MAIL_USER
    mail_group: str = DEFAULT_MAIL_GROUP
    # Extra lines appended verbatim: the escape hatch for settings not modelled above.
    extra: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        require_loopback(self.host)
        object.__setattr__(self, "ssl", SSLMode.parse(self.ssl))
        object.__setattr__(self, "users", tuple(self.users))
        object.__setattr__(self, "auth_mechanisms", tuple(self.auth_mechanisms))
        object.__setattr__(self, "extra", tuple(self.extra))
        if not (self.imap or self.imaps):
            raise ConfigError("imap=False, imaps=False: at least one IMAP listener is needed")
        if self.ssl is not SSLMode.NO and self.cert is None:
            raise ConfigError(
                f"ssl={self.ssl.value!r}: needs cert= (e.g. MailCA().server_cert()); "
                "or pass ssl='no'"
            )
        if self.ssl is SSLMode.NO and self.imaps:
            raise ConfigError(
                "imaps=True with ssl='no': implicit TLS needs ssl='yes' or 'required'"
            )
        if self.ssl_min_protocol not in SSL_PROTOCOLS:
            raise choice_error("ssl_min_protocol", self.ssl_min_protocol, SSL_PROTOCOLS)
        if self.ssl_max_protocol is not None:
            if self.ssl_max_protocol not in SSL_PROTOCOLS:
                raise choice_error("ssl_max_protocol", self.ssl_max_protocol, SSL_PROTOCOLS)
            if SSL_PROTOCOLS.index(self.ssl_max_protocol) < SSL_PROTOCOLS.index(
                self.ssl_min_protocol
            ):
                raise ConfigError(
                    f"ssl_max_protocol={self.ssl_max_protocol!r} is below "
                    f"ssl_min_protocol={self.ssl_min_protocol!r}"
                )
        if self.ssl_cipher_list is not None and any(c in self.ssl_cipher_list for c in "\r\n"):
            raise ConfigError(f"ssl_cipher_list={self.ssl_cipher_list!r}: one line, please")
        if self.submissions and self.ssl is SSLMode.NO:
            raise ConfigError(
                "submissions=True with ssl='no': implicit TLS needs ssl='yes' or 'required'"
            )
        if (self.submission or self.submissions) and self.submission_relay_port is None:
            raise ConfigError(
                "submission needs submission_relay_port= (the SMTP server Dovecot relays to)"
            )
        require_loopback(self.submission_relay_host)
        if not self.hostname or any(c in self.hostname for c in ' "\\\r\n'):
            raise ConfigError(f"hostname={self.hostname!r}: expected a plain host name")
        for mechanism in self.auth_mechanisms:
            if mechanism not in AUTH_MECHANISMS:
                raise choice_error("auth_mechanisms", mechanism, AUTH_MECHANISMS)
        if not self.auth_mechanisms:
            raise ConfigError("auth_mechanisms=(): expected at least one mechanism")
        if self.auth_failure_delay < 0:
            raise ConfigError(f"auth_failure_delay={self.auth_failure_delay!r}: expected >= 0")
        if self.mail_max_userip_connections < 1:
            raise ConfigError(
                f"mail_max_userip_connections={self.mail_max_userip_connections!r}: expected >= 1"
            )
        for name in ("quota_storage", "quota_messages"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}={value!r}: expected a positive number or None")
        if any(c in self.login_greeting for c in '\r\n"\\'):
            raise ConfigError(
                f"login_greeting={self.login_greeting!r}: no quotes, backslashes or line breaks"
            )
        seen: set[str] = set()
        for user in self.users:
            check_passwd_fields(user)
            if user.login.lower() in seen:
                raise ConfigError(f"user login={user.login!r}: listed twice")
            seen.add(user.login.lower())


def check_passwd_fields(user: User) -> None:
    """Refuse a login or password that a passwd-file line cannot hold."""
    for name in ("login", "password"):
        value = getattr(user, name)
        if any(c in value for c in _PASSWD_FORBIDDEN):
            raise ConfigError(
                f"user {name}={value!r}: Dovecot's passwd-file cannot hold ':' or line breaks"
            )
    if "/" in user.login or user.login in (".", ".."):
        raise ConfigError(f"user login={user.login!r}: must not contain '/' (it names a directory)")


@dataclass(frozen=True, slots=True)
class InstancePaths:
    """Where one running instance keeps everything; all under `root`, removed at stop."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def users(self) -> Path:
        return self.root / "users"

    @property
    def openssl_conf(self) -> Path:
        return self.root / "openssl.cnf"

    def passwd(self, login: str) -> Path:
        """One passwd-file per user: Dovecot re-reads a changed passwd-file at most once a
        second, but opens a file it has never seen at once, so a user added while running
        can log in immediately. Dovecot lower-cases logins (`auth_username_format = %Lu`)."""
        return self.users / login.lower()

    @property
    def base_dir(self) -> Path:
        return self.root / "run"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def log(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def stderr(self) -> Path:
        return self.root / "stderr.log"

    @property
    def mail(self) -> Path:
        return self.root / "mail"

    def home(self, login: str) -> Path:
        return self.mail / login

    def maildir(self, login: str) -> Path:
        return self.home(login) / "Maildir"


@dataclass(frozen=True, slots=True)
class Identity:
    """The OS accounts the rendered config names (resolved once, at start)."""

    mail_uid: int
    mail_gid: int
    # Dovecot's unprivileged service users; None keeps Dovecot's defaults (dovecot, dovenull).
    internal_user: str | None = None
    login_user: str | None = None


@dataclass(frozen=True, slots=True)
class Quota:
    """A per-user quota rule (Dovecot's `quota_rule = *:storage=<n>B:messages=<n>`)."""

    storage_bytes: int | None = None
    messages: int | None = None

    def __post_init__(self) -> None:
        for name in ("storage_bytes", "messages"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"quota {name}={value!r}: expected >= 0 or None")

    @property
    def rule(self) -> str | None:
        parts = ["*"]
        if self.storage_bytes is not None:
            # 0 would mean "unlimited" to Dovecot; 1 byte is as full as it gets.
            parts.append(f"storage={max(self.storage_bytes, 1)}B")
        if self.messages is not None:
            parts.append(f"messages={max(self.messages, 1)}")
        return ":".join(parts) if len(parts) > 1 else None


def passwd_line(
    user: User, identity: Identity, paths: InstancePaths, quota: Quota | None = None
) -> str:
    """One passwd-file line: `login:{PLAIN}password:uid:gid::home::extra fields`.

    Extra fields carry the account state Dovecot can express: `nologin=y` for a
    disabled user (Dovecot then answers `NO [CONTACTADMIN] Login disabled for
    this user`; a `reason=` would replace that text, but passwd-file splits
    extra fields on spaces, so a reason cannot hold one), `allow_nets=` and a
    per-user `userdb_quota_rule=`.
    """
    check_passwd_fields(user)
    home = os.fspath(paths.home(user.login))
    extra = []
    if user.disabled:
        extra.append("nologin=y")
    if user.allow_nets is not None:
        extra.append("allow_nets=" + ",".join(user.allow_nets))
    rule = quota.rule if quota is not None else None
    if rule is not None:
        extra.append(f"userdb_quota_rule={rule}")
    return (
        f"{user.login}:{{PLAIN}}{user.password}:{identity.mail_uid}:{identity.mail_gid}::{home}::"
        + " ".join(extra)
        + "\n"
    )


def openssl_conf(config: DovecotConfig) -> str | None:
    """The OpenSSL config that caps Dovecot's TLS version (None: no cap needed)."""
    if config.ssl_max_protocol is None:
        return None
    lines = [
        "openssl_conf = mailharness",
        "[mailharness]",
        "ssl_conf = mailharness_ssl",
        "[mailharness_ssl]",
        "system_default = mailharness_system",
        "[mailharness_system]",
        f"MaxProtocol = {config.ssl_max_protocol}",
    ]
    if config.ssl_cipher_list is not None:
        lines.append(f"CipherString = {config.ssl_cipher_list}")
    return "\n".join(lines) + "\n"


def _seconds(value: float) -> str:
    milliseconds = round(value * 1000)
    return f"{milliseconds} msecs"


def render_config(
    config: DovecotConfig, paths: InstancePaths, identity: Identity, ports: Mapping[str, int]
) -> str:
    """The complete `dovecot.conf` for one instance.

    `ports` maps listener names ("imap", "imaps", "submission", "submissions") to
    the ports of the sockets the process bound; a listener missing from it is
    disabled (`port = 0`).
    """
    yes_no = {True: "yes", False: "no"}
    submission = config.submission or config.submissions
    lines = [
        "# Written by mailharness (servers/dovecot); the instance's whole configuration.",
        f"base_dir = {paths.base_dir}",
        f"state_dir = {paths.state_dir}",
        f"instance_name = mailharness-{paths.root.name}",
        f"listen = {config.host}",
        "protocols = imap" + (" submission" if submission else ""),
        f"hostname = {config.hostname}",
        f"log_path = {paths.log}",
        f"info_log_path = {paths.log}",
        'log_timestamp = "%Y-%m-%d %H:%M:%S "',
        f'login_greeting = "{config.login_greeting}"',
        f"disable_plaintext_auth = {yes_no[config.disable_plaintext_auth]}",
        f"auth_mechanisms = {' '.join(config.auth_mechanisms)}",
        f"auth_failure_delay = {_seconds(config.auth_failure_delay)}",
        "mail_location = maildir:~/Maildir",
        f"first_valid_uid = {min(identity.mail_uid, 500)}",
        f"first_valid_gid = {min(identity.mail_gid, 1)}",
    ]
    if identity.internal_user is not None:
        lines.append(f"default_internal_user = {identity.internal_user}")
    if identity.login_user is not None:
        lines.append(f"default_login_user = {identity.login_user}")
    if config.ssl is SSLMode.NO:
        lines.append("ssl = no")
    else:
        assert config.cert is not None  # checked in DovecotConfig.__post_init__
        lines += [
            f"ssl = {config.ssl.value}",
            f"ssl_cert = <{config.cert.cert_path}",
            f"ssl_key = <{config.cert.key_path}",
            f"ssl_dh = <{config.ssl_dh}",
            f"ssl_min_protocol = {config.ssl_min_protocol}",
        ]
        if config.ssl_cipher_list is not None:
            lines.append(f"ssl_cipher_list = {config.ssl_cipher_list}")
        if config.ssl_max_protocol is not None:
            # Dovecot clears its children's environment except what is imported here.
            lines.append(
                f"import_environment = $import_environment OPENSSL_CONF={paths.openssl_conf}"
            )
    lines += [
        "passdb {",
        "  driver = passwd-file",
        f"  args = scheme=PLAIN username_format=%u {paths.users}/%u",
        "}",
        "userdb {",
        "  driver = passwd-file",
        f"  args = username_format=%u {paths.users}/%u",
        "}",
    ]
    imap_plugins = ""
    if config.quota or config.quota_storage is not None or config.quota_messages is not None:
        rule = ["*"]
        if config.quota_storage is not None:
            rule.append(f"storage={config.quota_storage}b")
        if config.quota_messages is not None:
            rule.append(f"messages={config.quota_messages}")
        lines += [
            "mail_plugins = $mail_plugins quota",
            "plugin {",
            "  quota = count:User quota",
            "  quota_vsizes = yes",
            *([f"  quota_rule = {':'.join(rule)}"] if len(rule) > 1 else []),
            "}",
        ]
        imap_plugins = "  mail_plugins = $mail_plugins imap_quota"
    lines += [
        "protocol imap {",
        f"  mail_max_userip_connections = {config.mail_max_userip_connections}",
        *([imap_plugins] if imap_plugins else []),
        "}",
        "service imap-login {",
        "  inet_listener imap {",
        f"    port = {ports.get('imap', 0)}",
        "  }",
        "  inet_listener imaps {",
        f"    port = {ports.get('imaps', 0)}",
        "    ssl = yes",
        "  }",
    ]
    if config.high_performance:
        lines += [
            "  service_count = 0",
            f"  process_min_avail = {os.cpu_count() or 1}",
            "  vsz_limit = 1G",
        ]
    lines.append("}")
    if submission:
        lines += [
            f"submission_relay_host = {config.submission_relay_host}",
            f"submission_relay_port = {config.submission_relay_port}",
            f"submission_relay_trusted = {yes_no[config.submission_relay_trusted]}",
            "service submission-login {",
            "  inet_listener submission {",
            f"    port = {ports.get('submission', 0)}",
            "  }",
            "  inet_listener submissions {",
            f"    port = {ports.get('submissions', 0)}",
            "    ssl = yes",
            "  }",
            "}",
        ]
    if not config.auth_penalty:
        # The auth process (an unprivileged user) cannot open a mode-0 socket, and Dovecot
        # then disables the penalty (auth-penalty.c: "penalty->disabled").
        lines += [
            "service anvil {",
            "  unix_listener anvil-auth-penalty {",
            "    mode = 0",
            "  }",
            "}",
        ]
    lines += [*config.extra, ""]
    return "\n".join(lines)
