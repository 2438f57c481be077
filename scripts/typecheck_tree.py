"""Lay out the `mailharness` package as it is installed, for mypy: symlinks only.

The repository keeps the design card's folders (harness/ is `mailharness`, servers/
is `mailharness.servers`); mypy finds modules by folder name, so it reads them
through DEST/mailharness, whose entries link to harness/'s and whose `servers`
links to servers/.

    python scripts/typecheck_tree.py [DEST]      (default .venv/typecheck)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lay_out(dest: Path) -> Path:
    tree = dest / "mailharness"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    for entry in (ROOT / "harness").iterdir():
        if entry.name != "__pycache__":
            (tree / entry.name).symlink_to(entry)
    (tree / "servers").symlink_to(ROOT / "servers")
    return tree


if __name__ == "__main__":
    lay_out(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".venv" / "typecheck")
