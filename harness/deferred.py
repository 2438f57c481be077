"""Standard modules that `mailharness serve` loads at their first use, not at import.

`import asyncio` (and `dataclasses`) import `inspect`, which brings `ast` and `dis`;
argparse's help formatter imports shutil, which imports `bz2` and `lzma` (C extensions
and their libraries) only to know they are there. None of them is used before a
plaintext `serve` greets its first client, and together they cost ~4 ms of its start
(issue 13). `defer()` puts a stand-in in `sys.modules` for each before anything imports
them: `import inspect` binds the stand-in, and the first attribute read from it runs the
real module's code into that same object, so every holder sees the real module from
then on.

`importlib.util.LazyLoader` cannot do this on Python 3.11: an `import` statement reads
the module's `__spec__`, which makes a LazyLoader module load at once. Here the
stand-in already holds the `__spec__`, `__name__`, `__file__`... that `module_from_spec`
gave it, and only a missing attribute (`inspect.signature`) loads it, under a lock of
its own, so a second thread waits for the load instead of seeing a half-run module.

What is not deferred, and why: loading a module needs file descriptors, so nothing that
reports errors (traceback's `linecache`, `tokenize`, `textwrap`: a server out of fds
must still log `socket.accept() out of system resource`) and nothing a session uses
(`base64` for SASL). asyncio reads `inspect` only to describe a failing callback, and
serve never compresses. `ssl` cannot be: `loop.create_server(sock=...)` asks
`isinstance(sock, ssl.SSLSocket)` for every listener, plaintext ones too. Nor `locale`
(argparse's gettext reads it) or `logging` (asyncio makes its logger at import).

Only the `serve` command defers (harness/cli.py), before its imports; importing
mailharness as a library defers nothing.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types

# What `serve` defers: imported on its way to the greeting, used there by nobody. From
# Python 3.12 on, dataclasses reads every class's annotations through inspect
# (`inspect.get_annotations`), so there it would load at the first dataclass anyway.
SERVE_DEFERRED: tuple[str, ...] = (
    ("inspect", "bz2", "lzma") if sys.version_info < (3, 12) else ("bz2", "lzma")
)

# One lock per stand-in: a module's code may import others (never a deferred one of
# ours), so no global lock is held while another import waits.
_LOCK = "__deferred_lock__"


class _Deferred(types.ModuleType):
    """A module whose code has not run yet; reading a missing attribute runs it."""

    def __getattr__(self, name: str) -> object:
        # Called only for attributes the module's dict lacks: `__spec__` and the
        # other dunders `module_from_spec` set are there, and load nothing.
        _load(self)
        if type(self) is _Deferred:  # this thread is running its code: half-run, as usual
            raise AttributeError(f"partially initialized module {self.__name__!r} has no {name!r}")
        return getattr(self, name)

    def __dir__(self) -> list[str]:
        _load(self)
        return list(self.__dict__)


def _load(module: types.ModuleType) -> None:
    lock = module.__dict__.get(_LOCK)
    if lock is None:
        return  # loaded already
    with lock:
        if type(module) is not _Deferred or "__deferred_loading__" in module.__dict__:
            return  # loaded by another thread meanwhile, or being loaded by this one
        module.__dict__["__deferred_loading__"] = True
        try:
            spec = module.__spec__
            assert spec is not None and spec.loader is not None
            spec.loader.exec_module(module)
            module.__class__ = types.ModuleType  # type: ignore[assignment]
        finally:
            del module.__dict__["__deferred_loading__"]
        module.__dict__.pop(_LOCK, None)


def defer(names: tuple[str, ...] = SERVE_DEFERRED) -> None:
    """Put a stand-in in `sys.modules` for each top-level module of `names` not imported yet."""
    for name in names:
        if name in sys.modules or "." in name:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            continue
        module = importlib.util.module_from_spec(spec)
        module.__dict__[_LOCK] = threading.RLock()
        module.__class__ = _Deferred
        sys.modules[name] = module


def deferred(name: str) -> bool:
    """Is `name` a stand-in whose code has not run yet (for tests and the bench)?"""
    return type(sys.modules.get(name)) is _Deferred
