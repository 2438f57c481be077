"""Host hygiene (issue 14 item 10): library code never installs packages, and the
install script's service guard lives only for the duration of its own install."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from mailharness.servers.dovecot import image

SCRIPT = Path(__file__).parent.parent / "scripts" / "install-system-deps"


def test_missing_debootstrap_is_named_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_commands(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"library code ran a command: {args!r}")

    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    monkeypatch.setattr(subprocess, "run", no_commands)
    with pytest.raises(image.ImageBuildError, match=r"apt-get install -y debootstrap"):
        image._ensure_debootstrap()


def test_install_script_removes_only_a_guard_it_created() -> None:
    """Read, not run: running it as root would change this machine."""
    text = SCRIPT.read_text()
    guard = text.index("if [ ! -e /usr/sbin/policy-rc.d ]; then")
    block = text[guard : text.index("fi\n", guard)]
    assert "trap 'rm -f /usr/sbin/policy-rc.d' EXIT" in block
    assert text.count("rm -f /usr/sbin/policy-rc.d") == 1
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0
