"""Build the `mailharness/dovecot` image once per machine, and find it after that.

    tag = ensure_image(ensure_engine().client())   # "mailharness/dovecot:3f9c0a1b2c4d"

The tag is a hash of the Dockerfile and every file under `image/`, so a change
to either builds a new image and an unchanged tree never rebuilds. The image is
also tagged `mailharness/dovecot:local`, the name compose uses.

Two paths, tried in order:

1. **Registry**: the Dockerfile as written (`FROM debian:bookworm-slim`, Dovecot
   from apt), built with host networking.
2. **Local base**, when the base cannot be pulled (no registry reachable):
   `debootstrap --variant=minbase --include=dovecot-imapd,... bookworm DIR MIRROR`
   (MIRROR is the Debian mirror this machine's apt sources already use, read at
   run time), `docker import` of that tree as `mailharness/dovecot-base:bookworm`,
   then the same Dockerfile `FROM` it (Dovecot is already there: the RUN step
   fetches nothing).

`MAILHARNESS_DOVECOT_BASE=local` skips the registry attempt (a machine known to
be offline); `=registry` forbids the fallback. Run `python -m servers.dovecot.image`
to build ahead of a test session.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
from mailharness.servers.dovecot.engine import ENGINE_DIR
from mailharness.servers.errors import ServerStartError, choice_error

log = logging.getLogger("mailharness.dovecot.image")

HERE = Path(__file__).resolve().parent
DOCKERFILE = HERE / "Dockerfile"
IMAGE_FILES = HERE / "image"
REPOSITORY = "mailharness/dovecot"
# The moving tag compose files name: always the newest build on this machine.
LOCAL_TAG = f"{REPOSITORY}:local"
REGISTRY_BASE = "debian:bookworm-slim"
SUITE = "bookworm"
PACKAGES = ("dovecot-imapd", "dovecot-pop3d", "dovecot-submissiond")
BASE_REPOSITORY = "mailharness/dovecot-base"
# debootstrap takes ~40 s here and a build from the local base a few more; slack for CI.
BOOTSTRAP_TIMEOUT = 900.0
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
BASE_ENV = "MAILHARNESS_DOVECOT_BASE"
BASE_CHOICES = ("auto", "registry", "local")


class ImageBuildError(ServerStartError):
    """The image could not be built by either path; the message says what failed."""


def context_files() -> dict[str, bytes]:
    """Build-context path -> content: the Dockerfile and everything under image/."""
    files = {"Dockerfile": DOCKERFILE.read_bytes()}
    for path in sorted(IMAGE_FILES.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            files[path.relative_to(HERE).as_posix()] = path.read_bytes()
    return files


def image_tag() -> str:
    """`mailharness/dovecot:<12 hex>`: changes exactly when the build inputs change."""
    digest = hashlib.sha256()
    for name, data in context_files().items():
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return f"{REPOSITORY}:{digest.hexdigest()[:12]}"


def _context_tar() -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in context_files().items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.startswith("image/") else 0o644
            info.mtime = 0  # identical inputs give an identical context
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One build at a time on this machine: a second xdist worker waits, then finds it."""
    directory = ENGINE_DIR if os.access(ENGINE_DIR, os.W_OK) else Path(tempfile.gettempdir())
    fd = os.open(directory / "mailharness-image.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _has(client: Any, name: str) -> bool:
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_image(client: Any, *, force: bool = False, base: str | None = None) -> str:
    """The image's tag; builds it first if this engine does not have it yet.

    `base`: "auto" (registry, else local), "registry" or "local"; default from
    the MAILHARNESS_DOVECOT_BASE environment variable, else "auto".
    """
    base = base or os.environ.get(BASE_ENV) or "auto"
    if base not in BASE_CHOICES:
        raise choice_error(
            BASE_ENV if base == os.environ.get(BASE_ENV) else "base", base, BASE_CHOICES
        )
    tag = image_tag()
    if not force and _has(client, tag):
        _tag_local(client, tag)
        return tag
    with _build_lock():
        if not force and _has(client, tag):
            return tag
        started = time.monotonic()
        log.info("building %s (one-off: the engine caches it)", tag)
        try:
            if base == "local":
                raise ImageBuildError(f"{BASE_ENV}=local")
            _build(client, tag, REGISTRY_BASE, pull=True)
            path = "registry base"
        except ImageBuildError as exc:
            if base == "registry":
                raise
            log.info("registry base %s not used (%s); using a local base", REGISTRY_BASE, exc)
            local = ensure_local_base(client)
            _build(client, tag, local, pull=False)
            path = "local debootstrap base"
        _tag_local(client, tag)
        log.info("built %s from the %s in %.1f s", tag, path, time.monotonic() - started)
    return tag


def _tag_local(client: Any, tag: str) -> None:
    image = client.images.get(tag)
    if LOCAL_TAG not in (image.tags or []):
        repository, name = LOCAL_TAG.split(":")
        image.tag(repository, name)


def _build(client: Any, tag: str, base: str, *, pull: bool) -> None:
    started = time.monotonic()
    if pull and not _has(client, base):
        log.info("pulling %s", base)
        repository, _, name = base.partition(":")
        try:
            client.images.pull(repository, tag=name or "latest")
        except docker.errors.APIError as exc:
            raise ImageBuildError(f"pull {base}: {exc.explanation or exc}") from exc
    log.info("docker build FROM %s", base)
    try:
        client.images.build(
            fileobj=_context_tar(),
            custom_context=True,
            tag=tag,
            buildargs={"BASE": base},
            network_mode="host",
            rm=True,
            forcerm=True,
            pull=False,
        )
    except docker.errors.BuildError as exc:
        output = "".join(
            str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log
        )
        raise ImageBuildError(
            f"docker build FROM {base} failed: {exc.msg}\n{output[-2000:]}"
        ) from exc
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"docker build FROM {base}: {exc.explanation or exc}") from exc
    log.info("docker build FROM %s done in %.1f s", base, time.monotonic() - started)


def base_tag() -> str:
    """Tag of the local debootstrap base, keyed by suite and package list."""
    key = hashlib.sha256(" ".join((SUITE, *PACKAGES)).encode()).hexdigest()[:8]
    return f"{BASE_REPOSITORY}:{SUITE}-{key}"


def ensure_local_base(client: Any) -> str:
    """`debootstrap` a minimal Debian with Dovecot and `docker import` it (cached)."""
    tag = base_tag()
    if _has(client, tag):
        log.info("local base %s already built", tag)
        return tag
    debootstrap = _ensure_debootstrap()
    mirror = debian_mirror()
    work = Path(tempfile.mkdtemp(prefix="mailharness-debootstrap-", dir="/var/tmp"))
    try:
        root = work / "root"
        started = time.monotonic()
        log.info("debootstrap %s (minbase + %s)", SUITE, ",".join(PACKAGES))
        _run(
            [
                debootstrap,
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                os.fspath(root),
                mirror,
            ]
        )
        # Downloaded .debs and apt lists: ~100 MB the image does not need.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (root / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        log.info("debootstrap done in %.1f s", time.monotonic() - started)
        started = time.monotonic()
        archive = work / "root.tar"
        _run(["tar", "-C", os.fspath(root), "-cf", os.fspath(archive), "."])
        repository, name = tag.split(":")
        client.api.import_image_from_file(os.fspath(archive), repository=repository, tag=name)
        log.info("docker import %s done in %.1f s", tag, time.monotonic() - started)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not _has(client, tag):
        raise ImageBuildError(f"docker import did not produce {tag}")
    return tag


def _run(command: list[str]) -> None:
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=BOOTSTRAP_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip().splitlines()[-20:]
        raise ImageBuildError(
            f"{' '.join(command)}: exit status {result.returncode}:\n" + "\n".join(output)
        )


def _ensure_debootstrap() -> str:
    """The debootstrap binary; library code never installs packages, it names the fix."""
    found = shutil.which("debootstrap", path=os.pathsep.join(["/usr/sbin", "/usr/bin", "/sbin"]))
    if found is not None:
        return found
    raise ImageBuildError(
        "no registry answers and the package debootstrap is missing: install it with "
        "`sudo apt-get install -y debootstrap` (or run scripts/install-system-deps)"
    )


_ONE_LINE = re.compile(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)")


def debian_mirror(sources: tuple[Path, ...] = APT_SOURCES) -> str:
    """The mirror this machine's apt already uses for the main suite (never hard-coded)."""
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            files += sorted(source.glob("*.sources")) + sorted(source.glob("*.list"))
        elif source.is_file():
            files.append(source)
    for path in files:
        text = path.read_text(errors="replace")
        mirror = _mirror_deb822(text) if path.suffix == ".sources" else _mirror_one_line(text)
        if mirror is not None:
            return mirror
    raise ImageBuildError(
        f"no apt source for Debian {SUITE!r} in {', '.join(map(str, sources))}: "
        "cannot pick a mirror for debootstrap"
    )


def _mirror_one_line(text: str) -> str | None:
    for line in text.splitlines():
        match = _ONE_LINE.match(line)
        if match and match.group(2) == SUITE:
            return match.group(1)
    return None


def _mirror_deb822(text: str) -> str | None:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and SUITE in fields.get("suites", "").split():
            uris = fields.get("uris", "").split()
            if uris and fields.get("enabled", "yes").lower() != "no":
                return uris[0]
    return None


def main() -> None:
    """`python -m servers.dovecot.image [--force]`: build (or find) the image, print its tag."""
    import argparse

    from mailharness.servers.dovecot.engine import ensure_engine

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    client = ensure_engine().client()
    print(ensure_image(client, force=args.force))


if __name__ == "__main__":
    main()
