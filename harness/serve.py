"""`mailharness serve`: a scenario served for hours, for QA and for scripts.

What the command line (harness/cli.py) hands over is resolved here into one
`ServeOptions` (addresses, backend, fronts, API), a scenario is served with it,
and the process then waits for signals: SIGINT/SIGTERM stop, SIGHUP reloads a
scenario file, SIGUSR1 prints a status line, SIGUSR2 is logged and ignored.

Addresses are stable when asked: `--port-base N` puts each listener at a fixed
offset from N (`PORT_OFFSETS`), `--port imap/implicit=10993` fixes one, and a
scenario file may carry the same in a `[serve]` table, read here and removed
before the rest goes to the scenario loader:

    [serve]
    host = "127.0.0.2"
    port_base = 10140
    ports = { "smtp/starttls" = 10587 }
    backend = "fake"
    fronts = ["imap/implicit"]
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import field
from pathlib import Path
from typing import Any, TextIO

from mailharness.catalog import CATALOG
from mailharness.certs import CertVariant, MailCA, default_cache_dir
from mailharness.lifecycle import fastest_loop_factory
from mailharness.scenario_files import load_toml
from mailharness.scenarios import Scenario, with_personality
from mailharness.server import BACKENDS, LISTENER_NAMES, MailConfig, MailServer
from mailharness.servers.errors import ConfigError, choice_error
from mailharness.servers.listeners import Security, require_loopback
from mailharness.servers.records import record
from mailharness.servers.smtp import CapturedMessage
from mailharness.servers.transcript import Transcript, TranscriptEvent

# `--port-base N`: each listener at N + its offset, in LISTENER_NAMES order; the API next.
PORT_OFFSETS: dict[str, int] = {name: offset for offset, name in enumerate(LISTENER_NAMES)}
API_OFFSET = len(LISTENER_NAMES)
UI_OFFSET = API_OFFSET + 1  # `--ui` with no port, beside a port base
SERVE_TABLE_FIELDS = ("host", "port_base", "ports", "backend", "fronts")
# Sessions whose login outcome the activity view still waits for: bounded for a long serve.
MAX_PENDING_LOGINS = 1000
# Activity lines waiting for a slow stderr before new ones are dropped (~1 MB).
MAX_QUEUED_LINES = 10_000
# Activity lines reach stderr in batches, at most this often (and all at once at exit).
ACTIVITY_FLUSH_SECONDS = 0.05
# How long the last activity lines may take to reach stderr at exit.
WRITER_STOP_TIMEOUT = 2.0


@record(frozen=False)
class ServeOptions:
    """How to serve, apart from what: addresses, backend, fronts. CLI beats the file's table."""

    host: str | None = None
    port_base: int | None = None
    ports: dict[str, int] = field(default_factory=dict)
    backend: str | None = None
    # Listeners served through a fault front, so the API can switch faults on them.
    fronts: tuple[str, ...] = ()

    def merged_over(self, base: ServeOptions) -> ServeOptions:
        """These options where set, `base`'s elsewhere (the CLI over a file's `[serve]`)."""
        return ServeOptions(
            host=self.host if self.host is not None else base.host,
            port_base=self.port_base if self.port_base is not None else base.port_base,
            ports={**base.ports, **self.ports},
            backend=self.backend if self.backend is not None else base.backend,
            fronts=self.fronts or base.fronts,
        )

    def check(self) -> None:
        if self.host is not None:
            self.host = require_loopback(self.host)
        if self.port_base is not None and not (
            isinstance(self.port_base, int)
            and not isinstance(self.port_base, bool)
            and 1 <= self.port_base <= 65535 - API_OFFSET
        ):
            raise ConfigError(
                f"port_base={self.port_base!r}: expected an integer, 1 to {65535 - API_OFFSET}"
            )
        for name, port in self.ports.items():
            if name not in LISTENER_NAMES:
                raise choice_error("port listener", name, LISTENER_NAMES)
            if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
                raise ConfigError(f"port {name}={port!r}: expected an integer, 1 to 65535")
        if self.backend is not None and self.backend not in BACKENDS:
            raise choice_error("backend", self.backend, BACKENDS)
        for name in self.fronts:
            if name not in (*LISTENER_NAMES, "all"):
                raise choice_error("fronts", name, (*LISTENER_NAMES, "all"))

    def listener_ports(self, config: MailConfig) -> dict[str, int]:
        """The fixed port of each listener `config` serves (none fixed: {})."""
        ports: dict[str, int] = {}
        for protocol in ("imap", "smtp"):
            if getattr(config, protocol) is None:
                continue
            for security in config.securities(protocol):
                name = f"{protocol}/{security.value}"
                if name in self.ports:
                    ports[name] = self.ports[name]
                elif self.port_base is not None:
                    ports[name] = self.port_base + PORT_OFFSETS[name]
        return ports

    def api_port(self, requested: int | None) -> int | None:
        """`--api` alone: port_base + API_OFFSET when a base is set, else ephemeral (0)."""
        if requested is None:
            return None
        if requested == 0 and self.port_base is not None:
            return self.port_base + API_OFFSET
        return requested


def parse_port_flags(values: list[str]) -> dict[str, int]:
    """`--port imap/implicit=10993` (repeatable) as a dict; bad ones name the flag."""
    ports: dict[str, int] = {}
    for value in values:
        name, sep, number = value.partition("=")
        if not sep or not number.strip().isdigit():
            raise ConfigError(
                f"--port {value!r}: expected LISTENER=PORT, e.g. imap/implicit=10993; "
                f"listeners: {', '.join(LISTENER_NAMES)}"
            )
        ports[name.strip()] = int(number)
    return ports


# --- the scenario: a catalog name or a file with an optional [serve] table ---------------
@record(kw_only=False)
class Resolved:
    """A scenario to serve and where it came from (a file is reloaded on SIGHUP)."""

    scenario: Scenario
    options: ServeOptions
    path: Path | None = None
    base: str | None = None  # a file's base scenario


def resolve(name_or_path: str) -> Resolved:
    if not name_or_path.endswith(".toml"):
        return Resolved(CATALOG[name_or_path], ServeOptions())
    import tomllib  # a catalog scenario needs no TOML parser

    path = Path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"scenario file {path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    options = _serve_table(path, data.get("serve"))
    base = str(data.get("base", "healthy"))
    # The loader knows the `[serve]` table and leaves it to us.
    return Resolved(load_toml(path, CATALOG), options, path, base)


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2


def tune_allocator() -> None:
    """Let the heap grow in 4 MiB steps and keep up to 32 MiB free at its top (glibc).

    With glibc's defaults a busy server shrinks its heap after a burst and grows it at
    the next, page by page: each new connection's objects then cost page faults and
    mprotect calls: about a sixth of the CPU of an IMAP login (docs/benchmarks.md). It
    must run before the server's loop thread makes its heap, and costs ~2 ms of start-up
    (ctypes). Only `serve` does it: a test process that imports the library keeps
    glibc's defaults.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt  # glibc's name on Linux
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return
    mallopt(_M_TOP_PAD, 4 * 1024 * 1024)
    mallopt(_M_TRIM_THRESHOLD, 32 * 1024 * 1024)


def _serve_table(path: Path, table: object) -> ServeOptions:
    if table is None:
        return ServeOptions()
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: serve={table!r}: expected a table, [serve]")
    for key in table:
        if key not in SERVE_TABLE_FIELDS:
            raise choice_error(f"{path}: [serve] field", key, SERVE_TABLE_FIELDS)
    ports = table.get("ports", {})
    if not isinstance(ports, dict):
        raise ConfigError(
            f"{path}: [serve] ports={ports!r}: expected a table of listener = port, "
            'e.g. ports = { "imap/implicit" = 10993 }'
        )
    fronts = table.get("fronts", ())
    if isinstance(fronts, str):
        fronts = (fronts,)
    if not isinstance(fronts, list | tuple) or not all(isinstance(f, str) for f in fronts):
        raise ConfigError(f"{path}: [serve] fronts={fronts!r}: expected a list of listener names")
    for key in ("host", "backend"):
        if key in table and not isinstance(table[key], str):
            raise ConfigError(f"{path}: [serve] {key}={table[key]!r}: expected a string")
    options = ServeOptions(
        host=table.get("host"),
        port_base=table.get("port_base"),
        ports=dict(ports),
        backend=table.get("backend"),
        fronts=tuple(fronts),
    )
    try:
        options.check()
    except ConfigError as error:
        raise ConfigError(f"{path}: [serve] {error}") from None
    return options


def _plain(config: MailConfig) -> bool:
    """Only plaintext listeners and no faults: where `serve --uvloop` may use uvloop.

    uvloop is opt-in because it is not asyncio: it starts reading right after
    `connection_made` (so an implicit-TLS ClientHello can slip past our handshake and the
    handshake hangs), and at fd exhaustion it neither logs nor backs off as asyncio does
    (tests/imap/test_hardening_imap.py waits for asyncio's line). Plaintext without faults
    is where it was proven to answer the same.
    """
    if config.backend != "fake" or config.faults or config.schedule:
        return False
    return all(
        security is Security.NONE
        for protocol in ("imap", "smtp")
        if getattr(config, protocol) is not None
        for security in config.securities(protocol)
    )


def build_config(
    resolved: Resolved, options: ServeOptions, personality: str | None
) -> tuple[MailConfig, dict[str, int]]:
    """The config to serve and its fixed ports, from the scenario and the options."""
    config = resolved.scenario.config
    if personality is not None:
        config = with_personality(config, personality)
    changes: dict[str, Any] = {}
    if options.host is not None:
        changes["host"] = options.host
    if options.backend is not None:
        changes["backend"] = options.backend
    if options.fronts:
        faults = dict(config.faults)
        wanted = LISTENER_NAMES if "all" in options.fronts else options.fronts
        for name in wanted:
            faults.setdefault(name, ())
        changes["faults"] = faults
    if changes:
        config = dataclasses.replace(config, **changes)
    return config, options.listener_ports(config)


# --- facts ----------------------------------------------------------------------------------
def fault_dict(fault: object) -> dict[str, Any]:
    """A fault as JSON: its kind (as scenario files name it) and its fields."""
    fields = {
        f.name: jsonable(getattr(fault, f.name))
        for f in dataclasses.fields(fault)  # type: ignore[arg-type]
    }
    return {"kind": fault_kind(fault), **fields}


def fault_kind(fault: object) -> str:
    """The kind name of a fault: the one list's (`toxics.FAULT_KINDS`) key for its class."""
    from mailharness.servers.faults import toxics

    return next(k for k, cls in toxics.FAULT_KINDS.items() if type(fault) is cls)


def jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "value") and not isinstance(value, int | float | str | bool):
        return jsonable(value.value)
    if value is None or isinstance(value, int | float | str | bool):
        return value
    return str(value)


def facts(
    resolved: Resolved,
    server: MailServer,
    cas: Mapping[str, Path],
    api: dict[str, Any] | None,
    ui: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `serve --json` object (its schema is in harness/cli.py's docstring)."""
    chosen = resolved.scenario
    config = server.config
    personality = config.smtp.personality if config.smtp is not None else chosen.personality
    return {
        "scenario": chosen.name,
        "pid": os.getpid(),
        "source": os.fspath(resolved.path) if resolved.path else "catalog",
        "base": resolved.base,
        **server.describe(),
        "host": config.host,
        "personality": personality,
        "faults": {
            name: [fault_dict(f) for f in front.faults] for name, front in server.fronts().items()
        },
        "cas": {name: os.fspath(path) for name, path in cas.items()},
        "server_does": chosen.server,
        "client_sees": expectation(resolved),
        "api": api,
        "ui": ui,
    }


def expectation(resolved: Resolved) -> str:
    """What a correct client sees: the scenario's own text (a file's `expectation`; without
    one the loader says it is not stated and quotes the base's)."""
    return resolved.scenario.client_sees


def human_summary(info: Mapping[str, Any]) -> str:
    lines = [f"mailharness: serving scenario {info['scenario']!r} (pid {info['pid']})"]
    if info["source"] != "catalog":
        lines.append(f"  from {info['source']}, based on {info['base']!r}")
    lines.append("")
    for e in info["endpoints"]:
        lines.append(f"  {e['protocol'].upper():5} {e['security']:9} {_hostport(e)}")
    for e in info["internal_listeners"]:
        lines.append(f"  (internal {e['protocol']} {_hostport(e)}: {e['role']})")
    lines.append("")
    for u in info["users"]:
        extra = f"  app password: {u['app_password']}" if u["app_password"] else ""
        lines.append(f"  user {u['login']}  password: {u['password']}{extra}")
    lines += [
        "",
        f"  backend: {info['backend']}   personality: {info['personality']}",
        f"  certificate: {info['cert']} ({CERT_NOTES[info['cert']]})",
        f"  CA certificate to trust: {info['ca_path']}",
    ]
    for name, path in info["cas"].items():
        if name != "harness":
            lines.append(f"    issuer for {name}: {path}")
    if info["faults"]:
        lines.append("  faults (switchable at run time):")
        for listener, faults in info["faults"].items():
            shown = ", ".join(_fault_text(f) for f in faults) or "none now"
            lines.append(f"    {listener}: {shown}")
    api = info["api"]
    if api is not None:
        lines.append(f"  control API: {api['url']}  (token in {api['state_file']})")
    ui = info.get("ui")
    if ui is not None:
        lines.append(f"  web console: {ui['open']}")
    lines += [
        "",
        f"  server: {info['server_does']}",
        f"  a correct client sees: {info['client_sees']}",
        "",
        "Ctrl-C stops. SIGHUP reloads a scenario file; SIGUSR1 prints a status line.",
    ]
    return "\n".join(lines)


CERT_NOTES = {
    CertVariant.TRUSTED.value: "signed by the harness CA",
    CertVariant.SELF_SIGNED.value: "self-signed: not trusted through any CA",
    CertVariant.UNKNOWN_CA.value: "signed by another CA, not the harness CA",
    CertVariant.EXPIRED.value: "expired 30 days ago",
    CertVariant.NOT_YET_VALID.value: "valid only from 30 days on",
    CertVariant.WRONG_HOST.value: "names another host only",
    CertVariant.MISSING_INTERMEDIATE.value: "the server does not send the intermediate CA",
    CertVariant.WEAK_KEY.value: "RSA 1024-bit key",
}


def _hostport(endpoint: Mapping[str, Any]) -> str:
    host = endpoint["host"]
    return f"[{host}]:{endpoint['port']}" if ":" in host else f"{host}:{endpoint['port']}"


def _fault_text(fault: Mapping[str, Any]) -> str:
    rest = ", ".join(f"{k}={v!r}" for k, v in fault.items() if k != "kind")
    return f"{fault['kind']}({rest})"


# --- activity on the terminal ----------------------------------------------------------------
class Activity:
    """One line per session event on a stream (stderr): connect, TLS, login and its outcome,
    mail captured, faults applied, close. Hooks run on the server's loop: quick, never raise.

    A writer thread does the writing: a stderr pipe nobody reads fills up, and a blocked
    write must not stop the mail servers. Past `MAX_QUEUED_LINES` lines are dropped and
    counted (`dropped`), and the count is written once the stream moves again. The loop
    only appends to a deque and wakes the writer when it was idle; the writer takes all
    that waits in one write, at most every `ACTIVITY_FLUSH_SECONDS` (a wake-up and a
    write per line took a fifth of `serve`'s logins/s, issue 13).
    """

    def __init__(
        self,
        out: TextIO,
        clock: Callable[[], dt.datetime] | None = None,
        max_queued: int = MAX_QUEUED_LINES,
    ) -> None:
        self.out = out
        self._clock = clock or (lambda: dt.datetime.now().astimezone())
        self._lines: deque[str] = deque()
        self._max_queued = max_queued
        self._waiting = threading.Event()  # set: lines wait for the writer
        self._stopping = threading.Event()
        self._stamp = ("", -1)  # (text, the second it is for): one clock read a second
        self.dropped = 0
        self._writer: threading.Thread | None = None
        # session id -> (tag, mechanism, login) of a login awaiting its reply
        self._pending: dict[int, tuple[str | None, str, str | None]] = {}
        self._order: deque[int] = deque()
        # Listeners a TLS-ending front forwards plaintext to: their sessions had TLS.
        self._behind_tls_fronts: tuple[str, ...] = ()
        self._server: MailServer | None = None

    def attach(self, server: MailServer) -> None:
        """Hook into a server before it starts (its internal listeners are read later)."""
        self._server = server
        self._behind_tls_fronts = ()
        server.transcripts.on_open = self._opened
        server.transcripts.on_event = self._event
        server.messages.on_add = self._captured

    def start(self) -> Activity:
        self._writer = threading.Thread(target=self._write, name="mailharness-activity")
        self._writer.daemon = True  # a write blocked on a full pipe must not hold the exit
        self._writer.start()
        return self

    def stop(self, timeout: float = WRITER_STOP_TIMEOUT) -> None:
        """Write what is queued (for up to `timeout`), then end the writer."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        self._stopping.set()
        self._waiting.set()
        writer.join(timeout)

    def line(self, text: str) -> None:
        stamp = self._now()
        if self._writer is None:  # not started: write here (tests, errors before start)
            self._print(f"{stamp} {text}")
            return
        if len(self._lines) >= self._max_queued:
            self.dropped += 1
            return
        self._lines.append(f"{stamp} {text}")
        if not self._waiting.is_set():
            self._waiting.set()

    def _now(self) -> str:
        """``HH:MM:SS`` of the clock, read once a second (a time zone lookup each)."""
        second = int(time.time())
        text, cached = self._stamp
        if second != cached:
            text = self._clock().strftime("%H:%M:%S")
            self._stamp = (text, second)
        return text

    def _write(self) -> None:
        reported = 0
        while True:
            self._waiting.wait()
            self._waiting.clear()  # before taking lines: one added after is never missed
            batch = []
            while self._lines:
                batch.append(self._lines.popleft())
            if batch:
                self._print("\n".join(batch))
            if self.dropped != reported and not self._lines:
                self._print(f"({self.dropped - reported} activity lines dropped: stderr was slow)")
                reported = self.dropped
            if self._stopping.is_set():
                if not self._lines:
                    return
            else:  # let lines gather: one wake-up and one write for all of them
                self._stopping.wait(ACTIVITY_FLUSH_SECONDS)

    def _print(self, text: str) -> None:
        # A closed terminal must not break a session.
        with contextlib.suppress(OSError, ValueError):
            print(text, file=self.out, flush=True)

    def _tls(self, transcript: Transcript, version: str | None) -> str:
        if version is not None:
            return version
        if not self._behind_tls_fronts and self._server is not None:
            self._behind_tls_fronts = tuple(
                f":{e.port}" for role, e in self._server.internal if "TLS-ending" in role
            ) or ("-",)
        if transcript.listener.split(" ")[0].endswith(self._behind_tls_fronts):
            return "TLS ended at the front"
        return "no TLS"

    def _opened(self, transcript: Transcript) -> None:
        self.line(f"{_who(transcript)} connect from {transcript.peer} to {transcript.listener}")

    def _event(self, transcript: Transcript, event: TranscriptEvent) -> None:
        try:
            self._describe(transcript, event)
        except Exception as error:
            self.line(f"{_who(transcript)} (activity view error: {error!r})")

    def _describe(self, transcript: Transcript, event: TranscriptEvent) -> None:
        who = _who(transcript)
        sid = transcript.session_id
        if event.direction == "event":
            self.line(f"{who} {event.text}")
        elif event.direction == "client" and event.mechanism is not None:
            self._remember(sid, (event.tag, event.mechanism, event.login))
        elif event.direction == "client" and event.login is not None and sid in self._pending:
            tag, mechanism, _ = self._pending[sid]
            self._pending[sid] = (tag, mechanism, event.login)
        elif event.direction == "server" and sid in self._pending:
            tag, mechanism, login = self._pending[sid]
            done = (
                event.status is not None and event.tag == tag
                if transcript.protocol == "imap"
                else event.reply_code not in (None, 334)
            )
            if done:
                del self._pending[sid]
                ok = event.status == "OK" or event.reply_code == 235
                outcome = "ok" if ok else f"failed: {event.text}"
                tls = self._tls(transcript, event.tls_version)
                self.line(f"{who} login {login or '?'} ({mechanism}, {tls}) {outcome}")

    def _remember(self, sid: int, pending: tuple[str | None, str, str | None]) -> None:
        if sid not in self._pending:
            self._order.append(sid)
        self._pending[sid] = pending
        while len(self._order) > MAX_PENDING_LOGINS:
            self._pending.pop(self._order.popleft(), None)

    def _captured(self, message: CapturedMessage) -> None:
        try:
            subject = message.subject
        except Exception:
            subject = None
        self.line(
            f"smtp mail captured {message.queue_id}: from <{message.mail_from}> to "
            f"{', '.join(f'<{r}>' for r in message.rcpt_tos)}, {len(message.data)} bytes, "
            f"subject {subject!r}, login {message.login or '-'}, {message.tls_version or 'no TLS'}"
        )


def _who(transcript: Transcript) -> str:
    return f"{transcript.protocol}#{transcript.session_id}"


# --- the running serve ------------------------------------------------------------------------
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


@record(frozen=False, kw_only=False)
class Running:
    """The server being served now and what it was built from (swapped on reload)."""

    resolved: Resolved
    server: MailServer
    started: float = field(default_factory=time.monotonic)


class Serve:
    """Serve until a stop signal; see the module docstring. `run()` returns the exit code."""

    def __init__(
        self,
        scenario: str,
        cli: ServeOptions,
        *,
        personality: str | None = None,
        as_json: bool = False,
        quiet: bool = False,
        certs_dir: str | None = None,
        api_port: int | None = None,
        ui_port: int | None = None,
        state_file: Path | None = None,
        cert_cache: bool = False,
        uvloop: bool = False,
        out: TextIO = sys.stdout,
        err: TextIO = sys.stderr,
    ) -> None:
        self.scenario_arg = scenario
        self.cli = cli
        self.personality = personality
        self.as_json = as_json
        self.quiet = quiet
        self.certs_dir = certs_dir
        self.api_port = api_port
        self.ui_port = ui_port
        self.state_file = state_file
        # Keep the CA between runs (QA trusts one CA), and run on uvloop where it may.
        self.cert_cache = cert_cache
        self.uvloop = uvloop
        self.out = out
        self.err = err
        self.lock = threading.RLock()  # held while the server is swapped, and by API calls
        self.running: Running | None = None
        self.api_info: dict[str, Any] | None = None
        self.cas: dict[str, Path] = {}
        # Signals reach the main thread through a wakeup socket (see `_signal_socket`).
        self._signal_reader: socket.socket | None = None
        self._activity = Activity(err)
        # Told of each server before it starts (first start, reload, switch): the console's
        # live view hooks its transcripts and captured mail here.
        self.on_server: list[Callable[[MailServer], None]] = []
        self.ui_info: dict[str, Any] | None = None
        self._ca: MailCA | None = None

    # -- logging --------------------------------------------------------------------------
    def log(self, text: str) -> None:
        self._activity.line(f"mailharness: {text}")

    # -- lifecycle ------------------------------------------------------------------------
    def run(self) -> int:
        with self._signal_socket():
            return self._run()

    def _run(self) -> int:
        self._activity.start()
        try:
            resolved = resolve(self.scenario_arg)
            options = self.cli.merged_over(resolved.options)
            options.check()
            cache = default_cache_dir() if self.cert_cache else None
            with MailCA(self.certs_dir, cache=cache) as ca:
                self.cas = ca.cas()
                self._ca = ca
                return self._serve(resolved, options, ca)
        finally:
            self._activity.stop()

    def _serve(self, resolved: Resolved, options: ServeOptions, ca: MailCA) -> int:
        """Start, announce, wait for a stop signal; the API and server stop before the CA."""
        api = None
        console = None
        try:
            if self.ui_port is not None:
                from mailharness.console import Console

                console = Console(self)  # hooks the server before it starts
            tune_allocator()  # before the loop thread makes its heap
            self.running = self._start(resolved, options, ca, {})
            port = options.api_port(self.api_port)
            if port is None and console is not None:
                port = options.api_port(0)  # the console is a client of the API
            if port is not None:
                from mailharness.control import ControlAPI

                host = self.running.server.config.host
                try:
                    api = ControlAPI(self, host=host, port=port).start()
                except OSError as error:
                    raise ConfigError(
                        f"--api port {port} on {host}: {error.strerror or error}"
                    ) from None
                self.api_info = api.publish(self.state_file)
            if console is not None and api is not None and self.ui_port is not None:
                ui_port = self.ui_port
                if ui_port == 0 and options.port_base is not None:
                    ui_port = min(options.port_base + UI_OFFSET, 65535)
                self.ui_info = console.start(api, ui_port)
            self._announce()
            return self._wait(ca)
        finally:
            if console is not None:
                console.stop()
            if api is not None:
                api.stop()
            if self.running is not None:
                self.running.server.stop()
                self.running = None

    def _start(
        self, resolved: Resolved, options: ServeOptions, ca: MailCA, keep: Mapping[str, int]
    ) -> Running:
        config, ports = build_config(resolved, options, self.personality)
        chosen = resolved.scenario
        if config.backend not in chosen.backends:
            self.log(
                f"scenario {chosen.name!r} is checked on {', '.join(chosen.backends)}, "
                f"not on backend {config.backend!r}: serving it anyway"
            )
        fixed = {**keep, **ports}
        fast = self.uvloop and _plain(config)
        server = MailServer(
            config,
            ca=ca,
            label=chosen.name,
            ports=fixed,
            loop_factory=fastest_loop_factory() if fast else None,
        )
        if not self.quiet:
            self._activity.attach(server)
        for hook in self.on_server:
            hook(server)
        try:
            server.start()
        except OSError as error:
            asked = ", ".join(f"{n}={p}" for n, p in fixed.items()) or "none fixed"
            raise ConfigError(
                f"cannot listen on {config.host}: {error.strerror or error} (ports: {asked})"
            ) from None
        try:
            if chosen.prepare is not None:
                chosen.prepare(server)
        except BaseException:
            server.stop()
            raise
        return Running(resolved, server)

    def _announce(self) -> None:
        assert self.running is not None
        info = facts(
            self.running.resolved, self.running.server, self.cas, self.api_info, self.ui_info
        )
        if self.as_json:
            print(json.dumps(info), file=self.out, flush=True)
        else:
            print(human_summary(info), file=self.out, flush=True)

    def facts(self) -> dict[str, Any]:
        with self.lock:
            assert self.running is not None
            return facts(
                self.running.resolved, self.running.server, self.cas, self.api_info, self.ui_info
            )

    @property
    def server(self) -> MailServer:
        assert self.running is not None
        return self.running.server

    # -- signals --------------------------------------------------------------------------
    @staticmethod
    def _on_signal(signum: int, frame: object) -> None:
        """Nothing: the signal's number reaches `_wait` through the wakeup socket."""

    @contextmanager
    def _signal_socket(self) -> Iterator[None]:
        """Every handled signal as a byte on a socket the main thread waits on.

        The kernel may deliver a signal to any thread (the loop's, the API's); Python
        then runs its handler only when the main thread next runs bytecode, which a
        main thread blocked in `Event.wait()` may never do. The C-level handler
        writes the signal number to the wakeup fd whichever thread took it.
        """
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        previous = {s: signal.signal(s, self._on_signal) for s in HANDLED_SIGNALS}
        self._signal_reader = reader
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            self._signal_reader = None
            reader.close()
            writer.close()

    def _wait(self, ca: MailCA) -> int:
        reader = self._signal_reader
        assert reader is not None
        while True:
            for signum in reader.recv(64):
                if signum in (signal.SIGINT, signal.SIGTERM):
                    self.log(f"{signal.Signals(signum).name}: stopping")
                    return 0
                if signum == signal.SIGHUP:
                    self.reload(ca)
                elif signum == signal.SIGUSR1:
                    self.log(self.status_line())
                else:
                    self.log(f"{signal.Signals(signum).name} ignored (SIGUSR1 prints status)")

    def status_line(self) -> str:
        with self.lock:
            running = self.running
            assert running is not None
            server = running.server
            uptime = time.monotonic() - running.started
            return (
                f"status: scenario {running.resolved.scenario.name!r} up {uptime:.0f}s, "
                f"{len(server.transcripts) + server.transcripts.dropped} sessions, "
                f"{server.messages.arrived} messages captured, "
                f"faults { ({n: len(f.faults) for n, f in server.fronts().items()}) }"
            )

    def switch(self, name: str) -> None:
        """Serve catalog scenario `name` instead, on the same addresses (the console's
        scenario switcher); options and fronts stay as started."""
        resolved = resolve(name)  # an unknown name raises, naming the catalog's
        with self.lock:
            running = self.running
            assert running is not None and self._ca is not None
            options = self.cli.merged_over(resolved.options)
            options.check()
            old = running.server
            keep = {f"{e.protocol}/{e.security.value}": e.port for e in old.endpoints()}
            old.stop()
            try:
                self.running = self._start(resolved, options, self._ca, keep)
            except Exception:  # keep serving what was served
                before = self.cli.merged_over(running.resolved.options)
                self.running = self._start(running.resolved, before, self._ca, keep)
                raise
            self.log(f"switched to scenario {resolved.scenario.name!r}")

    def reload(self, ca: MailCA) -> None:
        """SIGHUP: a scenario file is read again and served on the same addresses; a
        catalog scenario is reset and its state re-applied. A bad file keeps the old one."""
        with self.lock:
            running = self.running
            assert running is not None
            if running.resolved.path is None:
                running.server.reset()
                if running.resolved.scenario.prepare is not None:
                    running.resolved.scenario.prepare(running.server)
                self.log(
                    f"SIGHUP: {running.resolved.scenario.name!r} is a catalog scenario: "
                    "state reset and re-applied"
                )
                return
            try:
                resolved = resolve(os.fspath(running.resolved.path))
                options = self.cli.merged_over(resolved.options)
                options.check()
                build_config(resolved, options, self.personality)
            except ConfigError as error:
                self.log(f"SIGHUP: not reloaded, still serving the old scenario: {error}")
                return
            old = running.server
            keep = {
                f"{e.protocol}/{e.security.value}": e.port
                for e in old.endpoints()
                if old.config.host == (options.host or old.config.host)
            }
            old.stop()
            self.running = self._start(resolved, options, ca, keep)
            self.log(f"SIGHUP: reloaded {running.resolved.path}")
        self._announce()
