"""Real Dovecot behind `MailServer`: a `MailConfig` mapped onto Dovecot's own settings.

`MailServer(MailConfig(backend="dovecot"))` runs a `DovecotProcess` instead of
our fake IMAP server, and Dovecot's submission service instead of our fake
SMTP server. Submission relays every accepted message to one of our fake SMTP
servers (plain, no AUTH: it plays the MTA), so `server.messages` captures
what was submitted, and a local recipient's mail lands in their maildir.
The relay is trusted (`submission_relay_trusted`), so Dovecot names who logged
in, and from where, by XCLIENT LOGIN= and ADDR=: `CapturedMessage.login` is
filled as on the fake, and the relay's allowlist sees the client's address;
`tls_version` stays None: Dovecot's login process ends TLS, and neither the
submission process nor its `Received:` header ("with ESMTPSA") knows the version.

What maps (the rest makes the config *not applicable* on Dovecot, with the
reason; `not_applicable(config)` lists them):

| MailConfig                            | Dovecot                                        |
| ---                                   | ---                                            |
| listeners                             | `imap`/`imaps`, `submission`/`submissions`    |
| cert variant                          | `ssl_cert`/`ssl_key` from `MailCA`             |
| imap.plaintext_auth_requires_tls      | `disable_plaintext_auth = yes`, listening on   |
|                                       | 127.0.0.2 (see below)                          |
| imap.failure_delay                    | `auth_failure_delay`                           |
| imap.max_userip_connections           | `mail_max_userip_connections`                  |
| imap/smtp.auth_mechanisms (PLAIN/LOGIN)| `auth_mechanisms`                             |
| smtp.size_limit                       | `submission_max_mail_size`                     |
| smtp.allowed_networks (at RCPT)       | the relay, as Postfix behind Dovecot, by the   |
|                                       | client address Dovecot passes (XCLIENT ADDR=)  |
| User.disabled                         | passwd-file `nologin=y`                        |
| User.allow_nets                       | passwd-file `allow_nets=`                      |
| `server.set_quota(...)`               | quota plugin, userdb `quota_rule`              |
| `server.users.backend_down = True`    | the passdb really fails (passwd-files become   |
|                                       | symlink loops): "Temporary authentication      |
|                                       | failure", Dovecot's own text                   |

Listeners: Dovecot's plain ports always offer STARTTLS unless `ssl = no`. A
`none` listener beside TLS ones is that same plain port: a client set to no
security never sends STARTTLS and talks plaintext there, as it would to a
real server's 143 or 587 (Dovecot has no plain-only listener while `ssl = yes`).

Loopback is "secured" to Dovecot when the client's address equals the
server's, so `disable_plaintext_auth` alone changes nothing for a client on
127.0.0.1. With `plaintext_auth_requires_tls` Dovecot listens on 127.0.0.2:
a client connecting there from the default source (127.0.0.1) is not on the
server's own address, and sees LOGINDISABLED and `[PRIVACYREQUIRED]`. Every
certificate variant but `wrong-host` names 127.0.0.2 too (`SERVER_IDENTITIES`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mailharness.certs import CertVariant, MailCA
from mailharness.servers.accounts import User
from mailharness.servers.dovecot.config import DovecotConfig, SSLMode
from mailharness.servers.imap import IMAPSettings
from mailharness.servers.listeners import DEFAULT_HOST, Security
from mailharness.servers.smtp import SMTPSettings

# The address Dovecot listens on when loopback must not count as secure.
UNSECURED_LOOPBACK = "127.0.0.2"
# Field values Dovecot maps one to one; every other non-default field is not applicable.
_IMAP_MAPPED = frozenset(
    {"hostname", "plaintext_auth_requires_tls", "failure_delay", "max_userip_connections"}
)
_SMTP_MAPPED = frozenset(
    {"hostname", "starttls_required", "size_limit", "quota_temporary", "allowed_networks"}
)
_USER_UNSUPPORTED = (
    ("app_password", "an app password (Dovecot's passwd-file holds one password)"),
    ("require_app_password", "require_app_password"),
    ("web_login_required", "web_login_required (a Gmail behaviour)"),
    ("password_expired", "password_expired"),
)
_PASSWORD_MECHANISMS = ("PLAIN", "LOGIN")


def not_applicable(config: Any) -> list[str]:
    """Why Dovecot cannot serve `config` (a `MailConfig`) as the fake does; [] if it can."""
    reasons: list[str] = []
    imap: IMAPSettings | None = config.imap
    smtp: SMTPSettings | None = config.smtp
    if imap is None:
        reasons.append("imap=None: Dovecot always serves IMAP")
    else:
        reasons += _settings_reasons("imap", imap, IMAPSettings(), _IMAP_MAPPED)
        if not set(imap.auth_mechanisms) <= set(_PASSWORD_MECHANISMS):
            reasons.append(f"imap auth_mechanisms={imap.auth_mechanisms}: only PLAIN and LOGIN")
    if smtp is not None:
        reasons += _settings_reasons("smtp", smtp, SMTPSettings(), _SMTP_MAPPED)
        # The default also offers XOAUTH2, which Dovecot does not: fine for password clients.
        default_smtp = SMTPSettings().auth_mechanisms
        if smtp.auth_mechanisms != default_smtp and not set(smtp.auth_mechanisms) <= set(
            _PASSWORD_MECHANISMS
        ):
            reasons.append(
                f"smtp auth_mechanisms={smtp.auth_mechanisms}: Dovecot offers PLAIN and LOGIN"
            )
        imap_tls = imap is not None and imap.plaintext_auth_requires_tls
        if smtp.starttls_required != imap_tls:
            reasons.append(
                "smtp.starttls_required and imap.plaintext_auth_requires_tls differ: Dovecot's "
                "disable_plaintext_auth covers both protocols"
            )
    for user in config.users:
        if not user.imap_enabled:
            reasons.append(f"user {user.login}: imap_enabled=False (a Gmail behaviour)")
        for name, what in _USER_UNSUPPORTED:
            if getattr(user, name):
                reasons.append(f"user {user.login}: {what}")
    wants_tls = any(
        s is not Security.NONE for s in (*config.imap_listeners, *config.smtp_listeners)
    )
    if not wants_tls:
        return reasons
    for protocol in ("imap", "smtp"):
        listeners = getattr(config, f"{protocol}_listeners")
        if listeners == (Security.NONE,) and getattr(config, protocol) is not None:
            reasons.append(
                f"{protocol}_listeners=('none',) while other listeners want TLS: Dovecot's "
                "plain ports offer STARTTLS whenever ssl != no"
            )
    return reasons


def _settings_reasons(
    protocol: str, current: Any, default: Any, mapped: frozenset[str]
) -> list[str]:
    reasons = []
    for item in dataclasses.fields(current):
        if item.name in mapped or item.name == "auth_mechanisms":
            continue
        value = getattr(current, item.name)
        if value != getattr(default, item.name):
            reasons.append(f"{protocol}.{item.name}={value!r} has no Dovecot equivalent here")
    return reasons


def served_securities(config: Any, protocol: str) -> tuple[Security, ...]:
    """The securities of `protocol` Dovecot really serves for `config`, in config order."""
    if getattr(config, protocol) is None:
        return ()
    listeners: tuple[Security, ...] = getattr(config, f"{protocol}_listeners")
    if ssl_mode(config) is SSLMode.NO:
        return tuple(s for s in listeners if s is Security.NONE)
    return listeners


def ssl_mode(config: Any) -> SSLMode:
    wants_tls = any(
        s is not Security.NONE for s in (*config.imap_listeners, *config.smtp_listeners)
    )
    return SSLMode.YES if wants_tls else SSLMode.NO


def dovecot_config(
    config: Any, ca: MailCA, relay_port: int | None, users: tuple[User, ...] | None = None
) -> DovecotConfig:
    """The `DovecotConfig` that serves `config` (check `not_applicable` first)."""
    imap: IMAPSettings = config.imap or IMAPSettings()
    smtp: SMTPSettings | None = config.smtp
    ssl = ssl_mode(config)
    host = config.host
    if imap.plaintext_auth_requires_tls and host == DEFAULT_HOST:
        host = UNSECURED_LOOPBACK
    variant: CertVariant = config.cert
    mechanisms = tuple(m.lower() for m in imap.auth_mechanisms if m in _PASSWORD_MECHANISMS)
    extra: list[str] = []
    if smtp is not None:
        size = smtp.size_limit or 0
        extra.append(f"submission_max_mail_size = {size}")
    return DovecotConfig(
        host=host,
        users=tuple(users if users is not None else config.users),
        # Plain ports always run: a front that pins a TLS version forwards plaintext to
        # them even when only implicit TLS is reported. Unrequested listeners stay hidden.
        imap=True,
        imaps=ssl is not SSLMode.NO,
        submission=smtp is not None,
        submissions=smtp is not None and ssl is not SSLMode.NO,
        submission_relay_port=relay_port if smtp is not None else None,
        # The relay (our fake SMTP server) records the login Dovecot passes by XCLIENT.
        submission_relay_trusted=True,
        hostname=smtp.hostname if smtp is not None else imap.hostname,
        ssl=ssl,
        cert=None if ssl is SSLMode.NO else ca.server_cert(variant),
        # A 1024-bit key does not even load at OpenSSL's default security level 2.
        ssl_cipher_list="ALL:@SECLEVEL=0" if variant is CertVariant.WEAK_KEY else None,
        disable_plaintext_auth=imap.plaintext_auth_requires_tls,
        auth_mechanisms=mechanisms or ("plain", "login"),
        auth_failure_delay=imap.failure_delay,
        mail_max_userip_connections=imap.max_userip_connections or 10_000,
        quota=True,
        extra=tuple(extra),
    )
