"""The web console of `mailharness serve --ui [PORT]`: a page for QA, a client of the API.

It listens on its own loopback port and serves three things:

- `/ui/`: plain HTML, CSS and one script shipped in this package (`static/`), no build
  step and nothing fetched from elsewhere;
- `/api/...`: the control API's routes (harness/control.py) under a prefix, plus a few
  the page needs that a script does not (`/api/ui/...`: sessions with their outcome,
  a captured message taken apart, CA downloads, the scenario switcher);
- `/api/events`: server-sent events, one per session opened or changed and per message
  captured, fed by the server's transcript and capture hooks, so the page never polls.

The API token is the key: serve prints `/ui/?token=...` once; that request sets an
HttpOnly, SameSite=Strict cookie and redirects to `/ui/`, so the token leaves the
address bar. A request with the cookie or a bearer header is let in; one that changes
state must also send `Content-Type: application/json` (a cross-site form cannot), and a
`Host` that is not loopback is refused (DNS rebinding).
"""

from __future__ import annotations

import contextlib
import email.policy
import hmac
import json
import queue
import re
import socket
import threading
import urllib.parse
from collections.abc import Callable
from email.message import EmailMessage
from email.parser import BytesParser
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from typing import TYPE_CHECKING, Any

from mailharness.control import APIError, ControlAPI, _Handler, _HTTPServer, _session_summary
from mailharness.servers.errors import ConfigError, MailharnessError, choice_error
from mailharness.servers.ratelimit import RateLimit

if TYPE_CHECKING:
    from mailharness.serve import Serve
    from mailharness.server import MailServer
    from mailharness.servers.smtp import CapturedMessage
    from mailharness.servers.transcript import Transcript, TranscriptEvent

COOKIE = "mailharness_console"
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The page's own policy: its script and style only, API calls to itself, frames only from
# `srcdoc` (a captured message's HTML, sandboxed with no permissions at all).
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; frame-src 'self' about:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
# Events kept for a subscriber that reads slowly; past it the page is told to reload all.
MAX_QUEUED_EVENTS = 1000
# A comment line this often keeps the stream open through idle time and notices a gone page.
KEEPALIVE_SECONDS = 15.0
_LOOPBACK_HOST = re.compile(r"^(127(?:\.\d{1,3}){3}|localhost|\[::1\])(:\d+)?$")


class EventHub:
    """Fans server events out to each open event stream; the hooks are quick and never
    raise (they run on the mail server's loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: list[queue.Queue[dict[str, Any] | None]] = []

    def attach(self, server: MailServer) -> None:
        """Chain onto the server's hooks (after the activity lines'), before it starts."""
        transcripts, messages = server.transcripts, server.messages
        opened, evented, added = transcripts.on_open, transcripts.on_event, messages.on_add

        def on_open(t: Transcript) -> None:
            if opened is not None:
                opened(t)
            self.publish({"kind": "session", "id": t.session_id, "protocol": t.protocol})

        def on_event(t: Transcript, e: TranscriptEvent) -> None:
            if evented is not None:
                evented(t, e)
            self.publish({"kind": "session", "id": t.session_id, "protocol": t.protocol})

        def on_add(m: CapturedMessage) -> None:
            if added is not None:
                added(m)
            self.publish({"kind": "message", "queue_id": m.queue_id})

        transcripts.on_open, transcripts.on_event, messages.on_add = on_open, on_event, on_add
        self.publish({"kind": "state"})

    def publish(self, event: dict[str, Any]) -> None:
        with self._lock:
            queues = list(self._queues)
        for q in queues:
            # A full queue: that page gets "resync" when it catches up (see _stream).
            with contextlib.suppress(queue.Full):
                q.put_nowait(event)

    def subscribe(self) -> queue.Queue[dict[str, Any] | None]:
        q: queue.Queue[dict[str, Any] | None] = queue.Queue(MAX_QUEUED_EVENTS)
        with self._lock:
            self._queues.append(q)
        return q

    def unsubscribe(self, q: queue.Queue[dict[str, Any] | None]) -> None:
        with self._lock:
            if q in self._queues:
                self._queues.remove(q)

    def close(self) -> None:
        """End every stream (at stop)."""
        with self._lock:
            queues, self._queues = self._queues, []
        for q in queues:
            while True:
                try:
                    q.put_nowait(None)
                    break
                except queue.Full:
                    q.get_nowait()


# --- what the page reads that the API does not give as such ---------------------------------
# Words of a `*` event line that say the connection was turned away (allowlist, TLS, caps).
_REFUSALS = ("refused", "failed", "error", "queued")


def session_view(t: Transcript) -> dict[str, Any]:
    """A session for the list: who, TLS, its outcome with the server's reason, its faults."""
    events = list(t.events)
    logins = t.logins()
    users = sorted({login.login for login in logins if login.login})
    faults = [e.text for e in events if e.direction == "event" and e.text.startswith("fault")]
    outcome, reason = "open", ""
    if logins:
        last = logins[-1]
        outcome = "login ok" if last.succeeded else "login failed"
        if not last.succeeded:
            reason = _login_reply(t, events) or "no reply"
    closing = [e.text for e in events if e.direction == "event"]
    if faults:
        outcome = "fault" if outcome in ("open", "login ok") else outcome
        reason = reason or faults[-1]
    elif not logins:
        refusal = next((x for x in closing if any(w in x for w in _REFUSALS)), None)
        greeting = next((e.text for e in events if e.direction == "server"), "")
        if "UNAVAILABLE" in greeting or greeting.startswith("421"):
            refusal = greeting
        if refusal is not None:
            outcome, reason = "refused", refusal
    return {
        **_session_summary(t),
        "users": users,
        "outcome": outcome,
        "reason": reason,
        "faults": faults,
    }


def _login_reply(t: Transcript, events: list[TranscriptEvent]) -> str | None:
    """The server's answer to the last login attempt (its text is the reason)."""
    start = max(i for i, e in enumerate(events) if e.direction == "client" and e.mechanism)
    tag = events[start].tag
    for e in events[start + 1 :]:
        if e.direction != "server":
            continue
        if t.protocol == "imap" and e.status is not None and e.tag == tag:
            return e.text
        if t.protocol == "smtp" and e.reply_code not in (None, 334):
            return e.text
    return None


def message_view(index: int, m: CapturedMessage) -> dict[str, Any]:
    """A captured message taken apart: headers, text, HTML (shown sandboxed), attachments."""
    parsed = _parse(m.data)
    text = _body(parsed, "plain")
    html = _body(parsed, "html")
    return {
        "index": index,
        "queue_id": m.queue_id,
        "mail_from": m.mail_from,
        "rcpt_tos": list(m.rcpt_tos),
        "login": m.login,
        "tls_version": m.tls_version,
        "received_at": m.received_at.isoformat(),
        "size": len(m.data),
        "subject": str(parsed["Subject"] or ""),
        "headers": [[name, str(value)] for name, value in parsed.items()],
        "text": text,
        "html": html,
        "attachments": [
            {
                "index": n,
                "filename": part.get_filename() or f"part-{n}",
                "content_type": part.get_content_type(),
                "size": len(part.get_payload(decode=True) or b""),
            }
            for n, part in enumerate(_attachments(parsed))
        ],
    }


def _parse(data: bytes) -> EmailMessage:
    parsed = BytesParser(policy=email.policy.default).parsebytes(data.replace(b"\r\n", b"\n"))
    assert isinstance(parsed, EmailMessage)
    return parsed


def _body(parsed: EmailMessage, subtype: str) -> str | None:
    try:
        part = parsed.get_body(preferencelist=(subtype,))
        return None if part is None else str(part.get_content())
    except (LookupError, ValueError, KeyError):
        return None


def _attachments(parsed: EmailMessage) -> list[EmailMessage]:
    return [p for p in parsed.iter_attachments() if isinstance(p, EmailMessage)]


def scenarios() -> list[dict[str, str]]:
    from mailharness.catalog import CATALOG

    return [
        {"name": s.name, "family": s.family.value, "client_sees": s.client_sees}
        for s in CATALOG.values()
    ]


# --- the HTTP side ------------------------------------------------------------------------------
class _ConsoleHTTPServer(_HTTPServer):
    console: Console


class _ConsoleHandler(_Handler):
    server: _ConsoleHTTPServer

    def _handle(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        path = parts.path
        host = self.headers.get("Host", "")
        if not _LOOPBACK_HOST.match(host):
            self._error(421, f"Host {host!r}: the console answers loopback names only")
            return
        if path in ("/", "/ui"):
            self._redirect("/ui/")
            return
        if path.startswith("/ui/"):
            self._static(path[len("/ui/") :] or "index.html", parts.query)
            return
        if not path.startswith("/api/"):
            self._error(404, f"{path}: the console is at /ui/, its API under /api/")
            return
        if not self._authorized():
            self._error(401, "open the console URL serve printed (it carries the token once)")
            return
        if self.command not in ("GET", "HEAD") and not self.headers.get(
            "Content-Type", ""
        ).startswith("application/json"):
            self._error(415, "Content-Type: application/json required for changes")
            return
        try:
            if self._console_route(path[len("/api") :]):
                return
        except APIError as error:
            self._error(error.status, str(error))
            return
        except (ConfigError, ValueError) as error:
            self._error(400, str(error))
            return
        except MailharnessError as error:
            self._error(409, str(error))
            return
        # The control API's own routes, as `ctl` calls them.
        del self.headers["Authorization"]
        self.headers["Authorization"] = f"Bearer {self.server.api.token}"
        self.path = self.path[len("/api") :]
        super()._handle()
        if self.command != "GET":  # a switch changed: every open page reads the state again
            self.server.console.hub.publish({"kind": "state"})

    do_GET = _handle
    do_PUT = _handle
    do_POST = _handle
    do_PATCH = _handle
    do_DELETE = _handle

    # -- auth --------------------------------------------------------------------------
    def _authorized(self) -> bool:
        if self.server.api.authorized(self.headers.get("Authorization", "")):
            return True
        return self._cookie_token() is not None

    def _cookie_token(self) -> str | None:
        try:
            jar = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            return None
        morsel = jar.get(COOKIE)
        if morsel is not None and hmac.compare_digest(morsel.value, self.server.api.token):
            return morsel.value
        return None

    # -- replies -------------------------------------------------------------------------
    def _redirect(self, where: str, cookie: str | None = None) -> None:
        self.send_response(303)
        self.send_header("Location", where)
        if cookie is not None:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _static(self, name: str, query: str) -> None:
        token = urllib.parse.parse_qs(query).get("token", [""])[0]
        if token:
            if not hmac.compare_digest(token, self.server.api.token):
                self._error(401, "token: not this serve's (see serve --json, ui.open)")
                return
            cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
            self._redirect("/ui/", cookie)
            return
        if not re.fullmatch(r"[a-z0-9-]+\.(html|css|js|svg)", name):
            self._error(404, f"/ui/{name}: no such file")
            return
        try:
            body = resources.files(__package__).joinpath("static", name).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            self._error(404, f"/ui/{name}: no such file")
            return
        suffix = name[name.rindex(".") :]
        self._send(
            200,
            body,
            STATIC_TYPES[suffix],
            Content_Security_Policy=PAGE_CSP,
            Referrer_Policy="no-referrer",
            X_Frame_Options="DENY",
        )

    # -- the console's own routes ----------------------------------------------------------
    def _console_route(self, path: str) -> bool:
        """Answer `path` (after /api) if it is the console's own; False: not ours."""
        console = self.server.console
        serve = console.serve
        method = self.command
        if path == "/events" and method == "GET":
            self._stream(console.hub)
            return True
        if not path.startswith("/ui/"):
            return False
        rest = path[len("/ui/") :].rstrip("/")
        segments = rest.split("/")
        if rest == "sessions" and method == "GET":
            self._json([session_view(t) for t in serve.server.transcripts])
            return True
        if rest == "scenarios" and method == "GET":
            self._json(scenarios())
            return True
        if rest == "scenario" and method == "PUT":
            name = self._body().get("name")
            if not isinstance(name, str):
                raise ConfigError(f"name={name!r}: expected a catalog scenario's name")
            from mailharness.catalog import CATALOG

            if name not in CATALOG:
                raise choice_error("name", name, list(CATALOG))
            serve.switch(name)
            self._json(serve.facts())
            return True
        if rest == "switches" and method == "GET":
            users = serve.server.users
            rate = users.login_rate
            self._json(
                {
                    "auth_outage": users.backend_down,
                    "login_rate": None
                    if rate is None
                    else {"count": rate.count, "per_seconds": rate.per_seconds},
                }
            )
            return True
        if rest == "login-rate" and method == "PUT":
            users = serve.server.users
            body = self._body()
            count, per = body.get("count"), body.get("per_seconds", 60)
            if count is None:
                users.login_rate = None
            elif isinstance(count, int) and isinstance(per, int | float):
                users.login_rate = RateLimit(count=count, per_seconds=float(per))
            else:
                raise ConfigError(f"count={count!r}, per_seconds={per!r}: expected numbers")
            self.server.console.hub.publish({"kind": "state"})
            self._json({"login_rate": body if count is not None else None})
            return True
        if segments[0] == "ca" and len(segments) == 2 and method == "GET":
            cas = serve.cas
            if segments[1] not in cas:
                raise choice_error("ca", segments[1], list(cas))
            self._send(
                200,
                cas[segments[1]].read_bytes(),
                "application/x-pem-file",
                Content_Disposition=f'attachment; filename="{segments[1]}.pem"',
            )
            return True
        if segments[0] == "messages" and len(segments) >= 2 and method == "GET":
            self._message(segments[1:])
            return True
        raise APIError(404, f"/api{path}: no such console resource")

    def _message(self, segments: list[str]) -> None:
        if not segments[0].isdigit():
            raise ConfigError(f"index={segments[0]!r}: expected a number")
        index = int(segments[0])
        kept = list(self.server.console.serve.server.messages)
        if index >= len(kept):
            raise APIError(404, f"message index={index}: {len(kept)} kept")
        m = kept[index]
        if len(segments) == 1:
            self._json(message_view(index, m))
        elif segments[1:] == ["raw"]:
            self._send(
                200,
                m.data,
                "text/plain; charset=utf-8",
                Content_Disposition=f'attachment; filename="{m.queue_id}.eml"',
            )
        elif len(segments) == 3 and segments[1] == "attachments" and segments[2].isdigit():
            parts = _attachments(_parse(m.data))
            n = int(segments[2])
            if n >= len(parts):
                raise APIError(404, f"attachment {n}: the message has {len(parts)}")
            part = parts[n]
            payload = part.get_payload(decode=True)
            filename = re.sub(r"[^\w. -]", "_", part.get_filename() or f"part-{n}")
            self._send(
                200,
                payload if isinstance(payload, bytes) else b"",
                "application/octet-stream",  # never rendered here: downloaded
                Content_Disposition=f'attachment; filename="{filename}"',
            )
        else:
            raise APIError(404, "message: /api/ui/messages/N, N/raw or N/attachments/K")

    def _json(self, payload: object) -> None:
        self._send(200, json.dumps(payload).encode(), "application/json")

    def _stream(self, hub: EventHub) -> None:
        """Server-sent events until the page goes or the serve stops."""
        q = hub.subscribe()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            self.wfile.write(b'retry: 1000\ndata: {"kind": "hello"}\n\n')
            self.wfile.flush()
            while True:
                try:
                    event = q.get(timeout=KEEPALIVE_SECONDS)
                except queue.Empty:
                    self.wfile.write(b": keepalive\n\n")
                    self.wfile.flush()
                    continue
                if event is None:
                    return
                if q.qsize() >= MAX_QUEUED_EVENTS - 1:  # it fell behind: start over
                    while not q.empty():
                        if q.get_nowait() is None:
                            return
                    event = {"kind": "resync"}
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
        except OSError:
            return  # the page went away
        finally:
            hub.unsubscribe(q)


class Console:
    """The console of one `Serve`: built before the first server starts (to hook it),
    started once the API is up (it shares the token)."""

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.hub = EventHub()
        hook: Callable[[MailServer], None] = self.hub.attach
        serve.on_server.append(hook)
        self._http: _ConsoleHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self, api: ControlAPI, port: int) -> dict[str, Any]:
        """Bind and serve; the facts for `serve --json` (`ui`)."""
        host = self.serve.server.config.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("_Bound", (_ConsoleHTTPServer,), {"address_family": family})
        try:
            self._http = server_class((host, port), _ConsoleHandler)
        except OSError as error:
            raise ConfigError(f"--ui port {port} on {host}: {error.strerror or error}") from None
        self._http.api = api
        self._http.console = self
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{self._http.server_address[1]}"
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="mailharness-console", daemon=True
        )
        self._thread.start()
        return {"url": f"{url}/ui/", "open": f"{url}/ui/?token={api.token}"}

    def stop(self) -> None:
        self.hub.close()
        if self._http is not None and self._thread is not None:
            self._http.shutdown()
            self._http.server_close()
            self._thread.join()
