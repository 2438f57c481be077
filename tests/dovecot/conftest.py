"""Fixtures shared by the Docker-backed Dovecot tests."""

from __future__ import annotations

import pytest
from mailharness.servers.dovecot.engine import EngineInfo, EngineUnavailable, ensure_engine

from tests.helpers import in_ci, require_executable


@pytest.fixture(scope="module")
def engine() -> EngineInfo:
    """A Docker engine that answers (started privately if none runs); fails in CI without one."""
    try:
        return ensure_engine()
    except EngineUnavailable as exc:
        require_executable("dockerd")
        if in_ci():
            pytest.fail(f"no Docker engine: {exc}", pytrace=False)
        pytest.skip(f"no Docker engine: {exc}")
