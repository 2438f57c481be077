"""Helpers for mailharness's own tests (importable; conftest.py holds only hooks)."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require_executable(name: str) -> str:
    """Path of a client program the test needs; skip without it (fail in CI)."""
    __tracebackhide__ = True
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (the README's test command installs it)"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def require_backend(backend: str) -> None:
    """Skip (fail in CI) unless this Dovecot backend can run here: the `dovecot` binary
    for "dovecot", a Docker engine for "docker"."""
    __tracebackhide__ = True
    from servers.dovecot import DovecotNotInstalled, find_executable
    from servers.dovecot.engine import EngineUnavailable, ensure_engine

    try:
        if backend == "docker":
            ensure_engine()
        else:
            find_executable("dovecot")
    except (DovecotNotInstalled, EngineUnavailable) as error:
        if in_ci():
            pytest.fail(f"backend={backend!r}: {error}", pytrace=False)
        pytest.skip(f"backend={backend!r}: {error}")
