"""The README's Python examples type-check under mypy --strict, as a user's code would."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
# What the examples leave to the reader: their own connector.
STUBS = {
    "my_connector.pyi": "from typing import Any\n\n"
    "class Result:\n    code: str\n\n"
    "def check(**settings: Any) -> Result: ...\n",
}


def readme_blocks() -> list[str]:
    return BLOCK.findall((ROOT / "README.md").read_text())


def test_readme_has_python_examples() -> None:
    assert len(readme_blocks()) >= 3


def test_readme_examples_type_check(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from typecheck_tree import lay_out  # the package as installed, for mypy
    finally:
        sys.path.pop(0)
    lay_out(tmp_path / "site")
    for name, text in STUBS.items():
        (tmp_path / name).write_text(text)
    files = []
    for number, block in enumerate(readme_blocks()):
        path = tmp_path / f"readme_example_{number}.py"
        path.write_text(block)
        files.append(str(path))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--config-file=",
            "--follow-imports=silent",
            *files,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"MYPYPATH": f"{tmp_path}:{tmp_path / 'site'}", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
