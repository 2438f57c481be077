"""The same connector as a command, driven by `mailharness matrix` over the whole catalog.

What a project in any language does: no Python test code of its own, only a command
line with placeholders; the matrix serves every scenario, runs the command once per
client case and compares the code it prints with the one the case expects.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONNECTOR = Path(__file__).resolve().parent.parent / "inbox_connector.py"
# Options first, then `--`: the wrong-host case's host name starts with '-'.
TEMPLATE = (
    f"{sys.executable} {CONNECTOR} --ca {{ca_path}} --timeout {{timeout}} "
    "{insecure?--insecure} {legacy_tls?--legacy-tls} {xoauth2?--xoauth2} "
    "{source_address?--source-address} {source_address} "
    "-- {protocol} {host} {port} {security} {user} {password}"
)


def test_every_case_through_mailharness_matrix(tmp_path: Path) -> None:
    junit = tmp_path / "matrix.xml"
    command = [sys.executable, "-m", "mailharness.cli", "matrix", "--connector", TEMPLATE]
    command += ["--require-code", "-n", "2", "--junit", str(junit)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " 0 failed" in done.stdout
    assert junit.read_text().count("<testcase") >= 199
