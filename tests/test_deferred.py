"""harness/deferred.py: a deferred module loads at its first attribute read, once."""

from __future__ import annotations

import importlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from mailharness.deferred import defer, deferred

# A module that counts its runs and, when a test sets a gate, waits at it mid-run.
SOURCE = """
import builtins
builtins.__dict__.setdefault("deferred_runs", []).append(__name__)
first = 1
gate = builtins.__dict__.get("deferred_gate")
if gate is not None:
    gate[0].set()  # entered
    gate[1].wait(10)  # released by the test
last = 2
def double(x):
    return 2 * x
"""


@pytest.fixture
def module_name(tmp_path: Path) -> Iterator[str]:
    name = f"deferred_probe_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(SOURCE)
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        yield name
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)
        import builtins

        runs = builtins.__dict__.get("deferred_runs", [])
        runs[:] = [r for r in runs if r != name]


def _runs(name: str) -> int:
    import builtins

    return list(builtins.__dict__.get("deferred_runs", [])).count(name)


def test_import_binds_the_stand_in_and_the_first_attribute_runs_the_module(
    module_name: str,
) -> None:
    defer((module_name,))
    module = importlib.import_module(module_name)  # an import statement, as asyncio's
    assert deferred(module_name)
    assert module.__name__ == module_name and module.__spec__ is not None
    assert _runs(module_name) == 0
    assert module.double(21) == 42
    assert not deferred(module_name) and _runs(module_name) == 1
    assert sys.modules[module_name] is module  # the same object, now the real module
    exec(f"from {module_name} import last", (scope := {}))
    assert scope["last"] == 2 and _runs(module_name) == 1
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        _ = module.missing


def test_two_threads_reading_at_once_wait_for_one_load(module_name: str) -> None:
    import builtins

    defer((module_name,))
    module = sys.modules[module_name]
    entered, release = threading.Event(), threading.Event()
    builtins.__dict__["deferred_gate"] = (entered, release)
    seen: list[object] = []

    def read() -> None:
        try:
            seen.append(module.last)
        except AttributeError as error:  # what a half-run module would give
            seen.append(error)

    first = threading.Thread(target=read)
    second = threading.Thread(target=read)
    try:
        first.start()
        assert entered.wait(10)  # the first thread is running the module's code
        second.start()  # reads `last`, not there yet: must wait for the load
        release.set()
    finally:
        release.set()
        first.join(10)
        second.join(10)
        del builtins.__dict__["deferred_gate"]
    assert seen == [2, 2] and _runs(module_name) == 1


def test_an_imported_module_is_left_alone() -> None:
    defer(("json",))
    assert not deferred("json")


def test_serve_defers_its_modules_until_something_reads_them() -> None:
    script = (
        "from mailharness.deferred import SERVE_DEFERRED, defer, deferred\n"
        "defer()\n"
        "import asyncio, dataclasses, inspect, base64, shutil, traceback\n"
        "import mailharness.serve\n"
        "assert all(deferred(name) for name in SERVE_DEFERRED), SERVE_DEFERRED\n"
        "assert inspect.iscoroutinefunction(asyncio.sleep) and not deferred('inspect')\n"
        "assert asyncio.iscoroutinefunction(asyncio.sleep)\n"
        "assert base64.b64decode('YQ==') == b'a'\n"
        "import bz2, lzma\n"
        "assert bz2.decompress(bz2.compress(b'a')) == b'a' and not deferred('bz2')\n"
        "assert lzma.decompress(lzma.compress(b'a')) == b'a'\n"
        "assert 'ZeroDivisionError' in ''.join(traceback.format_exception(ZeroDivisionError()))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
