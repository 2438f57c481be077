"""The probe's TLS side: connections, the version scan and the certificate's facts.

Each fact costs its own connection (after STARTTLS on a STARTTLS port), so the
probe's main session stays exactly what a connector does. TLS 1.0 and 1.1 are
offered at OpenSSL security level 0, as a legacy client does; SSL 3.0, which
OpenSSL 3 cannot speak at all, through tlslite-ng.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from mailharness.diagnosis import Diagnosis, diagnose
from mailharness.journeys import _outcome
from mailharness.servers.listeners import Security

if TYPE_CHECKING:
    from mailharness.probe import ProbeSettings

__all__ = ["SCAN_VERSIONS", "Certificate", "certificate_facts", "connect", "scan_versions"]

# The versions a scan tries, oldest first, by the names TLSVersion faults and reports use.
SCAN_VERSIONS: tuple[tuple[str, ssl.TLSVersion], ...] = (
    ("tls1.0", ssl.TLSVersion.TLSv1),
    ("tls1.1", ssl.TLSVersion.TLSv1_1),
    ("tls1.2", ssl.TLSVersion.TLSv1_2),
    ("tls1.3", ssl.TLSVersion.TLSv1_3),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Certificate:
    """Facts of the server's leaf certificate, and what a default client says of it."""

    subject: str
    issuer: str
    names: tuple[str, ...]
    not_before: str
    not_after: str
    key: str  # "RSA 2048", "EC secp256r1"
    chain_length: int  # certificates the server sent
    self_signed: bool
    default_client: str  # the Diagnosis code a verifying client gives ("OK", "CERT_EXPIRED")
    default_client_says: str  # its words

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


def connect(settings: ProbeSettings) -> socket.socket:
    """A TCP connection as the settings say (source address, timeout); localhost is IPv4."""
    source = (settings.source_address, 0) if settings.source_address else None
    host = "127.0.0.1" if settings.host == "localhost" else settings.host
    return socket.create_connection(
        (host, settings.port), timeout=settings.timeout, source_address=source
    )


def tls_socket(settings: ProbeSettings, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    """A fresh connection up to a finished handshake (after STARTTLS on a STARTTLS port)."""
    sock = connect(settings)
    try:
        if settings.security is Security.STARTTLS:
            _starttls_plain(sock, settings.protocol)
        return ctx.wrap_socket(sock, server_hostname=settings.tls_name)
    except BaseException:
        sock.close()
        raise


def _starttls_plain(sock: socket.socket, protocol: str) -> None:
    """The plaintext exchange before a STARTTLS handshake, on a raw socket."""
    reader = sock.makefile("rb")
    try:

        def line() -> bytes:
            got = reader.readline(8192)
            if not got:
                raise ConnectionError("closed before STARTTLS")
            return got

        if protocol == "imap":
            line()
            sock.sendall(b"P1 STARTTLS\r\n")
            while not (got := line()).startswith(b"P1 "):
                pass
            if not got.startswith(b"P1 OK"):
                raise ConnectionError(got.decode("utf-8", "replace").strip())
        else:
            while line()[3:4] == b"-":
                pass
            sock.sendall(b"EHLO probe.mailharness.test\r\n")
            while line()[3:4] == b"-":
                pass
            sock.sendall(b"STARTTLS\r\n")
            got = line()
            if not got.startswith(b"220"):
                raise ConnectionError(got.decode("utf-8", "replace").strip())
    finally:
        reader.close()


def permissive_context(minimum: ssl.TLSVersion, maximum: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # Security level 0 lets OpenSSL 3 speak TLS 1.0/1.1 and accept weak keys.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = minimum
        ctx.maximum_version = maximum
    return ctx


def sslv3_accepted(settings: ProbeSettings) -> bool:
    """SSL 3.0 through tlslite-ng: OpenSSL 3 has no SSLv3 client either."""
    # Through sslv3: it imports tlslite with its asyncore DeprecationWarning silenced.
    from mailharness.servers.faults.sslv3 import HandshakeSettings, TLSConnection

    try:
        sock = connect(settings)
    except OSError:
        return False
    try:
        if settings.security is Security.STARTTLS:
            _starttls_plain(sock, settings.protocol)
        hs = HandshakeSettings()
        hs.minVersion = (3, 0)
        hs.maxVersion = (3, 0)
        TLSConnection(sock).handshakeClientCert(settings=hs)
        return True
    except Exception:  # tlslite raises its own alert classes, or OSError
        return False
    finally:
        sock.close()


def certificate_facts(settings: ProbeSettings) -> Certificate:
    with tls_socket(
        settings, permissive_context(ssl.TLSVersion.TLSv1, ssl.TLSVersion.MAXIMUM_SUPPORTED)
    ) as s:
        der = s.getpeercert(binary_form=True)
        chain = s._sslobj.get_unverified_chain() or []  # type: ignore[attr-defined]  # public in 3.13
    if der is None:
        raise ssl.SSLError("no certificate")
    cert = x509.load_der_x509_certificate(der)
    verdict, words = _default_client_verdict(settings)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(
            [*sans.get_values_for_type(x509.DNSName)]
            + [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
        )
    except x509.ExtensionNotFound:
        names = ()
    return Certificate(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        names=names,
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
        key=_key_text(cert),
        chain_length=len(chain),
        self_signed=cert.issuer == cert.subject,
        default_client=verdict.value,
        default_client_says=words,
    )


def _key_text(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return type(key).__name__.removesuffix("PublicKey")
    return type(key).__name__


def _default_client_verdict(settings: ProbeSettings) -> tuple[Diagnosis, str]:
    """What a client with default settings (and the given CA trusted) says of the certificate.

    A server too old for the default client is asked again by one that allows TLS 1.0
    (which, at security level 0, no longer minds weak keys).
    """
    error_text = ""
    for tls in ("default", "legacy"):
        strict = dataclasses.replace(settings, verify_certificate=True, tls=tls)
        try:
            with tls_socket(strict, strict.context()):
                return Diagnosis.OK, ""
        except ssl.SSLCertVerificationError as error:
            outcome = _outcome("tls", error)
            return diagnose(outcome), error.verify_message or str(error)
        except (OSError, ssl.SSLError) as error:
            error_text = str(error)
    return Diagnosis.UNKNOWN, error_text


def scan_versions(settings: ProbeSettings) -> tuple[str, ...]:
    """The versions the listener accepts, oldest first ("sslv3" only when nothing newer is)."""
    accepted = []
    for name, version in SCAN_VERSIONS:
        try:
            with tls_socket(settings, permissive_context(version, version)):
                accepted.append(name)
        except (OSError, ssl.SSLError):
            continue
    if not accepted and sslv3_accepted(settings):
        accepted.append("sslv3")
    return tuple(accepted)
