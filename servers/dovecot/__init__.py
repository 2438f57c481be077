"""Real Dovecot as a backend: a native process on our loopback sockets.

from mailharness.servers.dovecot import DovecotConfig, DovecotProcess

with DovecotProcess(DovecotConfig(cert=ca.server_cert())) as dovecot:
    dovecot.deliver("alice@example.test", raw_message)
    dovecot.endpoint("implicit").address      # ("127.0.0.1", port)
"""

from mailharness.servers.dovecot.config import CertFiles, DovecotConfig, SSLMode, render_config
from mailharness.servers.dovecot.instance import DovecotError, DovecotStartError
from mailharness.servers.dovecot.process import (
    DovecotNotInstalled,
    DovecotProcess,
    find_executable,
    pid_namespaces_available,
)

__all__ = [
    "CertFiles",
    "DovecotConfig",
    "DovecotError",
    "DovecotNotInstalled",
    "DovecotProcess",
    "DovecotStartError",
    "SSLMode",
    "find_executable",
    "pid_namespaces_available",
    "render_config",
]
