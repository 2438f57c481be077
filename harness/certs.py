"""Certificate factory: one CA per test session, leaf certificates by variant name.

Every variant a connector must refuse (self-signed, unknown CA, expired, wrong
host, missing intermediate, weak key...) is one name away, and each hands the
next library exactly what it consumes: an `ssl.SSLContext` for Python servers
and clients, PEM files for Dovecot, curl, openssl and swaks.

    ca = MailCA()
    server_ctx = ca.server_context("expired")
    client_ctx = ca.client_context()          # trusts the CA, verifies hosts
    subprocess.run(["curl", "--cacert", ca.ca_path, ...])
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import ipaddress
import json
import os
import ssl
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from mailharness.servers.errors import parse_choice
from mailharness.servers.records import record
from mailharness.servers.tlsversions import MODERN, limit_versions

# trustme and cryptography cost ~30-50 ms to import: a server without TLS never needs
# them, so they are imported where a certificate is made, not here.
if TYPE_CHECKING:
    import trustme
    from cryptography import x509

# What a cache of the CA and its `trusted` leaf holds (see `MailCA(cache=...)`).
_CACHE_FILES = ("ca.pem", "ca.key", "trusted.crt", "trusted.key")
# The other leaves (and the issuers `cas()` names) in a cache, in one JSON file replaced
# whole, so a reader never pairs one process's leaf with another's key.
_VARIANTS_FILE = "variants.json"
# Cached leaves are made again after this long: `not-yet-valid` turns valid 30 days after
# it was made, and must never be served valid. (`expired` stays expired; the CA and the
# `trusted` leaf are trustme's, valid until the year 3000.)
_VARIANTS_MAX_AGE = 7 * 24 * 3600.0


def default_cache_dir() -> Path:
    """Where `mailharness serve` keeps its CA between runs: the user's cache dir, keyed by
    this module's source, so a change to how certificates are made starts a new CA."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = f"{zlib.crc32(Path(__file__).read_bytes()):08x}"  # zlib: already imported
    return Path(base) / "mailharness" / f"certs-{digest}"


# Every name and address the harness serves on: a connector may be configured with any.
# 127.0.0.2 is where Dovecot listens when loopback must not count as secured
# (harness/dovecot_backend.py), so every leaf but `wrong-host` covers it too.
SERVER_IDENTITIES = ("localhost", "127.0.0.1", "127.0.0.2", "::1")
# A name that is never any of ours: the `wrong-host` leaf is valid only for it.
WRONG_HOST = "mail.wrong-host.invalid"
# Where `cas()` writes the issuers of the unknown-ca and missing-intermediate leaves.
OTHER_CA_FILE = "unknown-ca.issuer.pem"
INTERMEDIATE_CA_FILE = "missing-intermediate.issuer.pem"
# OpenSSL's security level 2 (Debian's default) refuses RSA keys under 2048 bits.
WEAK_RSA_BITS = 1024


class CertVariant(enum.Enum):
    """Server certificate variants, by the name scenarios and configs use."""

    TRUSTED = "trusted"
    SELF_SIGNED = "self-signed"
    UNKNOWN_CA = "unknown-ca"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    WRONG_HOST = "wrong-host"
    MISSING_INTERMEDIATE = "missing-intermediate"
    WEAK_KEY = "weak-key"

    @classmethod
    def parse(cls, value: str | CertVariant, field: str = "cert") -> CertVariant:
        return parse_choice(cls, value, field)


# The variants whose issuer is not our CA, and the file `cas()` names it by.
_ISSUER_FILES = {
    CertVariant.UNKNOWN_CA: OTHER_CA_FILE,
    CertVariant.MISSING_INTERMEDIATE: INTERMEDIATE_CA_FILE,
}
# A leaf as made: its chain (leaf first), its key, and its issuer when that is not ours.
_Leaf = tuple[bytes, bytes, bytes | None]


@record(kw_only=False)
class ServerCert:
    """What a server presents: the chain it sends (leaf first) and its private key."""

    variant: CertVariant
    chain_pem: bytes
    key_pem: bytes
    cert_path: Path
    key_path: Path

    def configure(self, ctx: ssl.SSLContext) -> None:
        ctx.load_cert_chain(self.cert_path, self.key_path)


def _write_private(path: Path, data: bytes, mode: int) -> Path:
    # Bare fd calls: `serve` writes ~20 of these before its greeting (issue 13).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is masked by umask; be exact
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    return path


# Where `tempfile.gettempdir()` looks first; `_private_temp_dir` takes the first that is
# a directory we may write, as it does, and leaves anything unusual to tempfile itself.
_TEMP_ENV = ("TMPDIR", "TEMP", "TMP")


def _private_temp_dir(prefix: str) -> Path:
    """`tempfile.mkdtemp(prefix=prefix)` without importing tempfile, which brings random,
    shutil, bz2 and lzma (~2.5 ms of `serve`'s start to its greeting, issue 13).

    As safe as mkdtemp: a name no one can predict (64 bits from `os.urandom`), made by
    `mkdir` (which fails if the name exists: O_EXCL's guarantee) with mode 0700, in the
    directory mkdtemp would pick. Where that is not plainly `$TMPDIR`/`$TEMP`/`$TMP` or
    /tmp (or tempfile is loaded anyway), tempfile does it.
    """
    base = None
    if "tempfile" not in sys.modules:
        for candidate in [os.environ.get(name) for name in _TEMP_ENV] + ["/tmp"]:
            if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
                base = os.path.abspath(candidate)
                break
    if base is None:
        import tempfile

        return Path(tempfile.mkdtemp(prefix=prefix))
    for _ in range(100):  # mkdtemp's retry count; a clash of 64 random bits never comes
        path = os.path.join(base, prefix + os.urandom(8).hex())
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return Path(path)
    raise FileExistsError(f"no unused temporary directory name in {base}")


def _name(common_name: str) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mailharness"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _custom_leaf(
    *, rsa_bits: int | None, issuer_cert_pem: bytes | None, issuer_key_pem: bytes | None
) -> tuple[bytes, bytes]:
    """A leaf trustme cannot make: RSA of a chosen size, or signed by itself.

    `rsa_bits=None` means an ECDSA P-256 key (fast to make).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if rsa_bits is None:
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    now = dt.datetime.now(dt.UTC)
    subject = _name("localhost")
    if issuer_cert_pem is None or issuer_key_pem is None:
        issuer_name, signing_key = subject, key
    else:
        issuer_name = x509.load_pem_x509_certificate(issuer_cert_pem).subject
        loaded = serialization.load_pem_private_key(issuer_key_pem, password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise TypeError(f"unsupported CA key type {type(loaded).__name__}")
        signing_key = loaded
    sans: list[x509.GeneralName] = [x509.DNSName("localhost")]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IDENTITIES[1:]]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(signing_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class MailCA:
    """The test CA and every leaf variant, written to a private (0700) temp dir.

    The CA itself and the leaves are made on first use and cached, so a session pays
    ~7 ms per variant it actually uses, and a server without TLS pays nothing (not even
    the import of trustme). `close()` removes the directory.

    `cache`: a private directory (0700, ours, files 0600) that keeps the CA and its
    `trusted` leaf between processes, so a `mailharness serve` that finds them there
    starts without importing trustme or cryptography (~40 ms) or making keys. The other
    variants are kept there too once one is asked for (`cas()` asks for all), made again
    after `_VARIANTS_MAX_AGE`. A cache dir that is not ours or is open to others is
    ignored (and never written).
    """

    def __init__(
        self, directory: str | Path | None = None, *, cache: str | Path | None = None
    ) -> None:
        self._owns_dir = directory is None
        if directory is None:
            self.directory = _private_temp_dir("mailharness-certs-")
        else:
            self.directory = Path(directory)
            self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        # Reentrant: a leaf is issued under it and may make the CA first.
        self._lock = threading.RLock()
        self._trustme_ca: trustme.CA | None = None
        self._ca_path: Path | None = None
        self._leaves: dict[CertVariant, ServerCert] = {}
        # CAs other than ours that a variant's leaf chains to, by file name (see `cas()`).
        self._other_cas: dict[str, Path] = {}
        self._shared: dict[CertVariant, ssl.SSLContext] = {}
        self._cache = None if cache is None else Path(cache)
        self._cache_files: dict[str, bytes] | None = None
        self._cache_read = False
        self._cached_leaves: dict[str, _Leaf] | None = None

    def _cached(self) -> dict[str, bytes] | None:
        """The cache's CA and `trusted` leaf, read once; None without a usable cache."""
        with self._lock:
            if not self._cache_read and self._cache is not None:
                self._cache_read = True
                self._cache_files = _read_cache(self._cache)
            return self._cache_files

    @property
    def _ca(self) -> trustme.CA:
        with self._lock:
            if self._trustme_ca is None:
                import trustme

                files = self._cached()
                if files is not None:
                    self._trustme_ca = trustme.CA.from_pem(files["ca.pem"], files["ca.key"])
                else:
                    self._trustme_ca = trustme.CA(organization_name="mailharness test CA")
                    if self._cache is not None:
                        self._cache_files = _fill_cache(self._cache, self._trustme_ca)
            return self._trustme_ca

    @property
    def ca_path(self) -> Path:
        """The CA certificate's PEM file (written when first asked for)."""
        return self._ensure_ca_file()

    def _ensure_ca_file(self) -> Path:
        with self._lock:
            if self._ca_path is None:
                self._ca_path = _write_private(self.directory / "ca.pem", self.ca_pem, 0o644)
            return self._ca_path

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate to trust, as PEM."""
        files = self._cached()
        if files is not None:
            return files["ca.pem"]
        return bytes(self._ca.cert_pem.bytes())

    def server_cert(self, variant: str | CertVariant = CertVariant.TRUSTED) -> ServerCert:
        variant = CertVariant.parse(variant)
        with self._lock:
            cached = self._leaves.get(variant)
            if cached is None:
                chain, key = self._issue(variant)
                # A leaf's directory holds its CA too (compose and QA copy the directory).
                self._ensure_ca_file()
                stem = self.directory / variant.value
                cached = ServerCert(
                    variant=variant,
                    chain_pem=chain,
                    key_pem=key,
                    cert_path=_write_private(stem.with_suffix(".crt"), chain, 0o644),
                    key_path=_write_private(stem.with_suffix(".key"), key, 0o600),
                )
                self._leaves[variant] = cached
        return cached

    def _issue(self, variant: CertVariant) -> tuple[bytes, bytes]:
        made = self._from_cache(variant) if self._cache is not None else None
        chain, key, issuer = self._make(variant) if made is None else made
        if issuer is not None:
            self._other_cas[_ISSUER_FILES[variant]] = _write_private(
                self.directory / _ISSUER_FILES[variant], issuer, 0o644
            )
        return chain, key

    def _from_cache(self, variant: CertVariant) -> _Leaf | None:
        """The variant's leaf from the cache, filling the cache first if it has none."""
        if variant is CertVariant.TRUSTED:
            files = self._cached()
            if files is None:
                _ = self._ca  # makes the CA and its trusted leaf, and keeps them
                files = self._cached()
            return None if files is None else (files["trusted.crt"], files["trusted.key"], None)
        if self._cached_leaves is None:
            files = self._cached()
            leaves = None if files is None else _read_variants(self._cache, files["ca.pem"])
            if leaves is None:
                leaves = {v.value: self._make(v) for v in CertVariant if v in _VARIANTS}
                self._keep_variants(leaves)
            self._cached_leaves = leaves
        return self._cached_leaves[variant.value]

    def _keep_variants(self, leaves: dict[str, _Leaf]) -> None:
        """Write `leaves` to the cache, if the cache's CA is the one that signed them (a
        process that lost the race to fill the cache signs with its own)."""
        cache = self._cache
        try:
            if cache is None or (cache / "ca.pem").read_bytes() != self.ca_pem:
                return
            if _private_dir(cache):
                _write_variants(cache, self.ca_pem, leaves)
        except OSError:
            pass  # a cache we cannot write is no error: the next start makes them again

    def _make(self, variant: CertVariant) -> _Leaf:
        now = dt.datetime.now(dt.UTC)
        ca = self._ca
        if variant is CertVariant.TRUSTED:
            # A subject CN as well as SANs: fetchmail and mbsync still read the CN.
            leaf = ca.issue_cert(*SERVER_IDENTITIES, common_name="localhost")
        elif variant is CertVariant.UNKNOWN_CA:
            import trustme

            other = trustme.CA(organization_name="some other CA")
            leaf = other.issue_cert(*SERVER_IDENTITIES)
            chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
            return chain, leaf.private_key_pem.bytes(), other.cert_pem.bytes()
        elif variant is CertVariant.EXPIRED:
            leaf = ca.issue_cert(
                *SERVER_IDENTITIES,
                not_before=now - dt.timedelta(days=60),
                not_after=now - dt.timedelta(days=30),
            )
        elif variant is CertVariant.NOT_YET_VALID:
            leaf = ca.issue_cert(
                *SERVER_IDENTITIES,
                not_before=now + dt.timedelta(days=30),
                not_after=now + dt.timedelta(days=60),
            )
        elif variant is CertVariant.WRONG_HOST:
            leaf = ca.issue_cert(WRONG_HOST)
        elif variant is CertVariant.MISSING_INTERMEDIATE:
            intermediate = ca.create_child_ca()
            leaf = intermediate.issue_cert(*SERVER_IDENTITIES)
            # Send the leaf alone: the intermediate is what the client is missing.
            chain, key = leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes()
            return chain, key, intermediate.cert_pem.bytes()
        elif variant is CertVariant.SELF_SIGNED:
            return (*_custom_leaf(rsa_bits=None, issuer_cert_pem=None, issuer_key_pem=None), None)
        else:  # CertVariant.WEAK_KEY
            chain, key = _custom_leaf(
                rsa_bits=WEAK_RSA_BITS,
                issuer_cert_pem=self.ca_pem,
                issuer_key_pem=ca.private_key_pem.bytes(),
            )
            return chain, key, None
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        return chain, leaf.private_key_pem.bytes(), None

    def cas(self) -> dict[str, Path]:
        """Every CA a client may be told to trust, by what it is (issues every variant).

        `harness`: ours (`ca.pem`); `unknown-ca`: the other CA that signed the
        `unknown-ca` leaf (a customer's internal CA); `missing-intermediate`: the
        intermediate the server does not send; `self-signed`: that leaf, its own issuer.
        """
        for variant in CertVariant:
            self.server_cert(variant)
        return {
            "harness": self.ca_path,
            "unknown-ca": self._other_cas[OTHER_CA_FILE],
            "missing-intermediate": self._other_cas[INTERMEDIATE_CA_FILE],
            "self-signed": self.server_cert(CertVariant.SELF_SIGNED).cert_path,
        }

    def server_context(self, variant: str | CertVariant = CertVariant.TRUSTED) -> ssl.SSLContext:
        """A modern server context (TLS 1.2+) presenting the variant's certificate."""
        cert = self.server_cert(variant)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        limit_versions(ctx, MODERN[0])
        if cert.variant is CertVariant.WEAK_KEY:
            # Our own OpenSSL would refuse to load a 1024-bit key at level 2.
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        cert.configure(ctx)
        return ctx

    def shared_server_context(
        self, variant: str | CertVariant = CertVariant.TRUSTED
    ) -> ssl.SSLContext:
        """`server_context`, made once per variant and shared by every server of this CA.

        Loading a certificate chain costs about a millisecond, and a server has up to four
        TLS listeners; the servers only wrap sockets with it, so one context serves all.
        Do not change it: take `server_context` for a context of your own.
        """
        variant = CertVariant.parse(variant)
        ctx = self._shared.get(variant)
        if ctx is None:
            ctx = self._shared.setdefault(variant, self.server_context(variant))
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """What a correct connector uses: default verification, trusting this CA."""
        ctx = ssl.create_default_context()
        self._ca.configure_trust(ctx)
        return ctx

    @staticmethod
    def insecure_client_context() -> ssl.SSLContext:
        """The connector's "allow a non-secure certificate" setting: no verification."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        # Allow weak keys too: the user accepted whatever the server has.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        return ctx

    def export(self, directory: str | Path) -> Path:
        """Copy the CA and every issued leaf to `directory` (for compose and QA)."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        self._ensure_ca_file()
        for variant in CertVariant:
            self.server_cert(variant)
        import shutil

        for path in self.directory.iterdir():
            shutil.copy2(path, target / path.name)
        return target

    def close(self) -> None:
        if self._owns_dir:
            import shutil

            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> MailCA:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _private_dir(path: Path, others: int = 0o077) -> bool:
    """Is `path` a directory of ours (not a link) without any of the `others` mode bits?"""
    try:
        st = path.lstat()
    except OSError:
        return False
    return st.st_uid == os.getuid() and (st.st_mode & (0o7000 | others)) == 0 and path.is_dir()


# The variants kept in `_VARIANTS_FILE` (the trusted leaf has its own files).
_VARIANTS = tuple(v for v in CertVariant if v is not CertVariant.TRUSTED)


def _read_variants(cache: Path | None, ca_pem: bytes) -> dict[str, _Leaf] | None:
    """The cached variant leaves, if they are there, signed by `ca_pem`'s CA and fresh."""
    if cache is None or not _private_dir(cache):
        return None
    try:
        data = json.loads((cache / _VARIANTS_FILE).read_bytes())
        if data["ca"] != ca_pem.decode() or not (
            0 <= time.time() - data["made"] < _VARIANTS_MAX_AGE
        ):
            return None
        return {
            v.value: (
                data["leaves"][v.value]["chain"].encode(),
                data["leaves"][v.value]["key"].encode(),
                None
                if data["leaves"][v.value]["issuer"] is None
                else data["leaves"][v.value]["issuer"].encode(),
            )
            for v in _VARIANTS
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _write_variants(cache: Path, ca_pem: bytes, leaves: dict[str, _Leaf]) -> None:
    """Replace the cache's variants file whole (a private temp file renamed over it)."""
    data = {
        "made": time.time(),
        "ca": ca_pem.decode(),
        "leaves": {
            name: {
                "chain": chain.decode(),
                "key": key.decode(),
                "issuer": None if issuer is None else issuer.decode(),
            }
            for name, (chain, key, issuer) in leaves.items()
        },
    }
    import tempfile

    fd, staging = tempfile.mkstemp(prefix=".variants-", dir=cache)
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp: 0600 already
            json.dump(data, f)
        os.replace(staging, cache / _VARIANTS_FILE)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(staging)
        raise


def _read_cache(cache: Path) -> dict[str, bytes] | None:
    if not _private_dir(cache):
        return None
    try:
        return {name: (cache / name).read_bytes() for name in _CACHE_FILES}
    except OSError:
        return None


def _fill_cache(cache: Path, ca: trustme.CA) -> dict[str, bytes]:
    """Issue the `trusted` leaf of a new CA and keep both in `cache`; returns what was made.

    Written to a private temp dir beside it and renamed into place, so two processes
    filling the cache at once never mix one's CA with the other's leaf: the loser keeps
    its own (in memory) and the next process reads the winner's.
    """
    leaf = ca.issue_cert(*SERVER_IDENTITIES, common_name="localhost")
    files = {
        "ca.pem": bytes(ca.cert_pem.bytes()),
        "ca.key": bytes(ca.private_key_pem.bytes()),
        "trusted.crt": b"".join(blob.bytes() for blob in leaf.cert_chain_pems),
        "trusted.key": bytes(leaf.private_key_pem.bytes()),
    }
    parent = cache.parent
    try:
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Others may read the parent (~/.cache/mailharness holds other caches too), but
        # nobody else may write it: else they could swap our directory for theirs.
        if not _private_dir(parent, others=0o022):
            return files
        import shutil
        import tempfile

        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
        try:
            for name, data in files.items():
                _write_private(staging / name, data, 0o600)
            os.rename(staging, cache)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError:
        pass  # a cache we cannot write is no error: the next start makes its own CA
    return files
