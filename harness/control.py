"""The control API of a running `mailharness serve`: HTTP + JSON on loopback, opt-in.

`serve --api [PORT]` starts it beside the mail listeners. Every request but
`GET /openapi.json` needs `Authorization: Bearer <token>`; the token is made
at start, printed in `serve --json` and written, with the URL, to a 0600 state
file that `mailharness ctl` reads. It covers every run-time switch a
`MailServer` has, and reads sessions, transcripts, captured mail and mailboxes:

    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:PORT/status
    curl -X PUT -H "Authorization: Bearer $TOKEN" -d '{"faults": [{"kind": "refuse"}]}' \\
         http://127.0.0.1:PORT/faults/imap/implicit

One table (`ROUTES`) drives both the dispatch and the OpenAPI 3 description
served at `/openapi.json`. A bad request gets 400 with a message naming the
field and the values allowed; a switch a backend does not have (Dovecot's
behaviour is fixed by its config) gets 409. Standard library only.
"""

from __future__ import annotations

import dataclasses
import hmac
import http.server
import json
import os
import re
import secrets
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from mailharness import values
from mailharness.serve import fault_dict, jsonable
from mailharness.server import LISTENER_NAMES, NOT_APPLICABLE, NotApplicable
from mailharness.servers.accounts import Lockout, User
from mailharness.servers.errors import ConfigError, MailharnessError, choice_error
from mailharness.servers.faults import toxics
from mailharness.servers.ratelimit import RateLimit

if TYPE_CHECKING:
    from mailharness.serve import Serve
    from mailharness.server import MailServer

API_VERSION = "1"
# A request body larger than this is refused: the API takes switches, not mail.
MAX_BODY_BYTES = 1 << 20


class APIError(Exception):
    """An error reply: the HTTP status and a message that names what was wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --- where the state file lives (serve writes it, ctl reads it) ------------------------------
def default_state_file() -> Path:
    """`$MAILHARNESS_STATE`, else `$XDG_RUNTIME_DIR/mailharness/serve.json`, else
    `/tmp/mailharness-<uid>/serve.json` (a private directory either way)."""
    explicit = os.environ.get("MAILHARNESS_STATE")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "mailharness" if runtime else Path(f"/tmp/mailharness-{os.getuid()}")
    return base / "serve.json"


def _write_state(path: Path, state: Mapping[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    os.chmod(path, 0o600)


# --- values from JSON, checked against the field's type ---------------------------------------
def coerce(where: str, value: object, hint: object) -> object:
    """`value` (from JSON) as the type `hint` wants (see `mailharness.values`)."""
    return values.convert(where, value, hint, "json")


def _describe(hint: object) -> str:
    return values.describe(hint, "json")


def build(where: str, cls: type, body: Mapping[str, object]) -> Any:
    """A dataclass from a JSON object: each field checked, unknown fields named."""
    return values.build(where, cls, body, "json")


def changes_for(where: str, cls: type, body: Mapping[str, object]) -> dict[str, object]:
    """Field changes for `dataclasses.replace`, each checked against the field's type."""
    hints = values.hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in values.PYTHON_ONLY]
    values.check_keys(where, body, names)
    return {key: coerce(f"{where}.{key}", value, hints[key]) for key, value in body.items()}


def parse_fault(where: str, spec: object) -> toxics.Fault:
    fault: toxics.Fault = values.build_kind(where, spec, toxics.FAULT_KINDS, "json")
    return fault


# --- the routes ----------------------------------------------------------------------------------
Handler = Callable[["Request"], object]


@dataclass(frozen=True, slots=True)
class Request:
    server: MailServer
    serve: Serve
    params: dict[str, str]
    body: dict[str, Any]

    def field(self, name: str, hint: object) -> Any:
        if name not in self.body:
            raise ConfigError(f"{name}: missing; expected {_describe(hint)}")
        return coerce(name, self.body[name], hint)


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str  # with {parameters}
    summary: str
    handler: Handler
    body: dict[str, Any] | None = None  # JSON schema of the request body

    @property
    def pattern(self) -> re.Pattern[str]:
        regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m[1]}>[^/]+(?:/[^/]+)?)", self.path)
        return re.compile(f"^{regex}$")


def _status(r: Request) -> object:
    return r.serve.facts()


def _faults(r: Request) -> object:
    return {
        name: [fault_dict(f) for f in front.faults] for name, front in r.server.fronts().items()
    }


def _front(r: Request) -> Any:
    listener = r.params["listener"]
    fronts = r.server.fronts()
    if listener not in fronts:
        if listener not in LISTENER_NAMES:
            raise choice_error("listener", listener, LISTENER_NAMES)
        served = ", ".join(sorted(fronts)) or "none"
        raise APIError(
            409,
            f"listener={listener!r}: not served through a fault front (fronted: {served}); "
            f"serve with --fronts {listener} (or --fronts all) to switch faults on it",
        )
    return fronts[listener]


def _fault_list(r: Request) -> list[toxics.Fault]:
    specs = r.body.get("faults")
    if not isinstance(specs, list):
        raise ConfigError(
            f"faults={specs!r}: expected a list of faults, e.g. [{{'kind': 'refuse'}}]"
        )
    return [parse_fault(f"faults[{i}]", s) for i, s in enumerate(specs)]


def _set_faults(r: Request) -> object:
    faults = _fault_list(r)
    _front(r).set(*faults)
    return _faults(r)


def _add_faults(r: Request) -> object:
    faults = _fault_list(r)
    _front(r).add(*faults)
    return _faults(r)


def _clear_faults(r: Request) -> object:
    _front(r).clear()
    return _faults(r)


def _maintenance(r: Request) -> object:
    on = r.field("on", bool)
    r.server.set_maintenance(on)
    return {"maintenance": on}


def _auth_outage(r: Request) -> object:
    on = r.field("on", bool)
    r.server.users.backend_down = on
    return {"auth_outage": on}


def _accounts_state(r: Request) -> dict[str, Any]:
    users = r.server.users
    return {
        "backend_down": users.backend_down,
        "lockout": jsonable(users.lockout),
        "login_rate": jsonable(users.login_rate),
    }


def _get_accounts(r: Request) -> object:
    return _accounts_state(r)


def _patch_accounts(r: Request) -> object:
    allowed = {"backend_down": bool, "lockout": Lockout | None, "login_rate": RateLimit | None}
    changes = {}
    for key, value in r.body.items():
        if key not in allowed:
            raise choice_error("accounts: field", key, allowed)
        changes[key] = coerce(key, value, allowed[key])
    if r.server.config.backend != "fake" and set(changes) - {"backend_down"}:
        raise APIError(
            409,
            f"{NOT_APPLICABLE} lockout and login_rate on backend={r.server.config.backend!r}: "
            "Dovecot's auth policy is fixed by its config at start",
        )
    for key, value in changes.items():
        setattr(r.server.users, key, value)
    return _accounts_state(r)


def _announce_shutdown(r: Request) -> object:
    r.server.announce_shutdown()
    return {"announced": True}


def _protocol_settings(r: Request) -> Any:
    protocol = r.params["protocol"]
    if protocol not in ("imap", "smtp"):
        raise choice_error("protocol", protocol, ("imap", "smtp"))
    current = getattr(r.server.config, protocol)
    if current is None:
        raise APIError(409, f"{protocol}: this server does not serve {protocol.upper()}")
    try:  # no changes: the settings in force now
        return r.server.switch_imap() if protocol == "imap" else r.server.switch_smtp()
    except NotApplicable:  # Dovecot: fixed by its config at start
        return current


def _get_settings(r: Request) -> object:
    return as_json(_protocol_settings(r))


def _patch_settings(r: Request) -> object:
    protocol = r.params["protocol"]
    current = _protocol_settings(r)
    changes = changes_for(protocol, type(current), r.body)
    switch = r.server.switch_imap if protocol == "imap" else r.server.switch_smtp
    return as_json(switch(**changes))


def as_json(value: object) -> dict[str, Any]:
    """A dataclass's fields as JSON values."""
    shown = jsonable(value)
    assert isinstance(shown, dict)
    return shown


def _user(r: Request) -> User:
    login = r.params["login"]
    user = r.server.users.get(login) or r.server.users.by_address(login)
    if user is None:
        raise choice_error("user", login, [u.login for u in r.server.users])
    return user


def _users(r: Request) -> object:
    return [as_json(u) for u in r.server.users]


def _add_user(r: Request) -> object:
    user = build("user", User, r.body)
    return as_json(r.server.users.add(user))


def _deliver(r: Request) -> object:
    user = _user(r)
    message = r.field("message", str)
    mailbox = coerce("mailbox", r.body.get("mailbox", "INBOX"), str)
    uid = r.server.deliver(user.login, message.encode(), mailbox=mailbox)  # type: ignore[arg-type]
    return {"user": user.login, "mailbox": mailbox, "uid": uid}


def _patch_user(r: Request) -> object:
    user = _user(r)
    changes = changes_for("user", User, r.body)
    for fixed in ("address", "login"):
        if fixed in changes:
            raise ConfigError(f"user field={fixed!r}: fixed at start; change the others")
    return as_json(r.server.users.update(user.login, **changes))


def _quota(r: Request) -> object:
    user = _user(r)
    storage = coerce("storage_bytes", r.body.get("storage_bytes"), int | None)
    messages = coerce("messages", r.body.get("messages"), int | None)
    r.server.set_quota(user.login, storage_bytes=storage, messages=messages)  # type: ignore[arg-type]
    return {"user": user.login, "storage_bytes": storage, "messages": messages}


def _reset(r: Request) -> object:
    r.server.reset()
    r.server.users.lockout = None  # the scenario's prepare sets them again if it has them
    r.server.users.login_rate = None
    scenario = r.serve.running.resolved.scenario if r.serve.running is not None else None
    if scenario is not None and scenario.prepare is not None:
        scenario.prepare(r.server)
    return {"reset": True}


def _session_summary(t: Any) -> dict[str, Any]:
    return {
        "id": t.session_id,
        "protocol": t.protocol,
        "peer": t.peer,
        "listener": t.listener,
        "tls_version": t.tls_version,
        "events": len(t.events),
        "logins": [login._asdict() for login in t.logins()],
    }


def _sessions(r: Request) -> object:
    return [_session_summary(t) for t in r.server.transcripts]


def _session(r: Request) -> object:
    wanted = coerce("id", _int_param(r.params["id"], "id"), int)
    for t in r.server.transcripts:
        if t.session_id == wanted:
            return {
                **_session_summary(t),
                "text": t.text(),
                "lines": [
                    {k: v for k, v in as_json(e).items() if v is not None} for e in list(t.events)
                ],
            }
    raise APIError(404, f"session id={wanted}: not kept (sessions: GET /sessions)")


def _int_param(value: str, name: str) -> int:
    if not value.isdigit():
        raise ConfigError(f"{name}={value!r}: expected a number")
    return int(value)


def _message_summary(index: int, m: Any) -> dict[str, Any]:
    return {
        "index": index,
        "queue_id": m.queue_id,
        "mail_from": m.mail_from,
        "rcpt_tos": list(m.rcpt_tos),
        "subject": m.subject,
        "login": m.login,
        "peer": m.peer,
        "listener": m.listener,
        "tls_version": m.tls_version,
        "received_at": m.received_at.isoformat(),
        "size": len(m.data),
    }


def _messages(r: Request) -> object:
    return [_message_summary(i, m) for i, m in enumerate(r.server.messages)]


def _message(r: Request) -> object:
    index = _int_param(r.params["index"], "index")
    kept = list(r.server.messages)
    if index >= len(kept):
        raise APIError(404, f"message index={index}: {len(kept)} kept (0 to {len(kept) - 1})")
    m = kept[index]
    return {**_message_summary(index, m), "data": m.data.decode("utf-8", "replace")}


def _mailboxes(r: Request) -> object:
    user = _user(r)
    if r.server.config.backend != "fake":
        raise APIError(
            409,
            f"mailboxes: listed for the fake backend; on {r.server.config.backend!r} read them "
            "over IMAP",
        )
    result = []
    for box in r.server.store.user(user.login).mailboxes():
        messages = box.get_many(box.uids())
        result.append(
            {
                "name": box.name,
                "special_use": box.special_use,
                "uidvalidity": box.uidvalidity,
                "messages": [
                    {
                        "uid": m.uid,
                        "flags": sorted(m.flags),
                        "size": m.size,
                        "subject": _subject(m.raw),
                    }
                    for m in messages
                ],
            }
        )
    return {"user": user.login, "mailboxes": result}


def _subject(raw: bytes) -> str | None:
    from email import message_from_bytes, policy

    value = message_from_bytes(raw, policy=policy.default)["Subject"]
    return None if value is None else str(value)


_ON = {"type": "object", "required": ["on"], "properties": {"on": {"type": "boolean"}}}
_FAULTS = {
    "type": "object",
    "required": ["faults"],
    "properties": {
        "faults": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["kind"],
                "properties": {"kind": {"type": "string", "enum": list(toxics.FAULT_KINDS)}},
                "additionalProperties": True,
            },
        }
    },
}
_FIELDS = {"type": "object", "additionalProperties": True}
_QUOTA = {
    "type": "object",
    "properties": {
        "storage_bytes": {"type": "integer", "nullable": True},
        "messages": {"type": "integer", "nullable": True},
    },
}

_DELIVER = {
    "type": "object",
    "required": ["message"],
    "properties": {"message": {"type": "string"}, "mailbox": {"type": "string"}},
}

ROUTES: tuple[Route, ...] = (
    Route("GET", "/status", "What is served: the `serve --json` facts", _status),
    Route("GET", "/faults", "The faults in force, by fronted listener", _faults),
    Route("PUT", "/faults/{listener}", "Replace a listener's faults", _set_faults, _FAULTS),
    Route("POST", "/faults/{listener}", "Add faults to a listener", _add_faults, _FAULTS),
    Route("DELETE", "/faults/{listener}", "Clear a listener's faults", _clear_faults),
    Route("PUT", "/maintenance", "Maintenance greeting for new connections", _maintenance, _ON),
    Route("PUT", "/auth-outage", "Every login fails temporarily", _auth_outage, _ON),
    Route("GET", "/accounts", "Auth policy: backend_down, lockout, login_rate", _get_accounts),
    Route(
        "PATCH",
        "/accounts",
        "Change the auth policy: lockout {max_failures, seconds}, login_rate {count, "
        "per_seconds}, backend_down",
        _patch_accounts,
        _FIELDS,
    ),
    Route("POST", "/announce-shutdown", "BYE / 421 to every open session", _announce_shutdown),
    Route("GET", "/settings/{protocol}", "IMAP or SMTP settings in force", _get_settings),
    Route(
        "PATCH",
        "/settings/{protocol}",
        "Change IMAP/SMTP settings (rate limits, maintenance, ...) at run time",
        _patch_settings,
        _FIELDS,
    ),
    Route("GET", "/users", "The users and their account states", _users),
    Route("POST", "/users", "Add a user: address, password, ...", _add_user, _FIELDS),
    Route(
        "PATCH",
        "/users/{login}",
        "Change a user: password, disabled, app_password, ...",
        _patch_user,
        _FIELDS,
    ),
    Route("PUT", "/users/{login}/quota", "Limit a user's mailbox", _quota, _QUOTA),
    Route(
        "GET", "/mailboxes/{login}", "A user's mailboxes and messages (fake backend)", _mailboxes
    ),
    Route(
        "POST",
        "/mailboxes/{login}",
        "Put a message in a user's mailbox (default INBOX); returns its UID",
        _deliver,
        _DELIVER,
    ),
    Route("POST", "/reset", "Forget sessions, mail and changes; re-apply the scenario", _reset),
    Route("GET", "/sessions", "Sessions kept (newest last), with their logins", _sessions),
    Route("GET", "/sessions/{id}", "One session's transcript", _session),
    Route("GET", "/messages", "Captured SMTP messages", _messages),
    Route("GET", "/messages/{index}", "One captured message, with its data", _message),
)


PARAMETERS = {
    "listener": "a listener name, e.g. imap/implicit (its slash as is, or as %2F)",
    "protocol": "imap or smtp",
    "login": "a user's login or address",
    "id": "a session id (GET /sessions)",
    "index": "a captured message's index (GET /messages)",
}


def _identifier(path: str) -> str:
    return re.sub(r"\W+", "_", path).strip("_")


def openapi(url: str) -> dict[str, Any]:
    """The OpenAPI 3 description of `ROUTES`."""
    paths: dict[str, dict[str, Any]] = {}
    error = {"$ref": "#/components/schemas/Error"}
    for route in ROUTES:
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": f"{route.method.lower()}_{_identifier(route.path)}",
            "responses": {
                "200": {"description": "done", "content": {"application/json": {}}},
                **{
                    code: {"description": why, "content": {"application/json": {"schema": error}}}
                    for code, why in (
                        ("400", "a field is wrong: the message names it and what is allowed"),
                        ("401", "no or wrong bearer token"),
                        ("404", "no such item"),
                        ("409", "not possible on this server or backend"),
                    )
                },
            },
        }
        parameters = re.findall(r"\{(\w+)\}", route.path)
        if parameters:
            operation["parameters"] = [
                {
                    "name": p,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": PARAMETERS.get(p, p),
                }
                for p in parameters
            ]
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": route.body}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": "mailharness serve control API", "version": API_VERSION},
        "servers": [{"url": url}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
                }
            },
        },
    }


# --- the HTTP server ---------------------------------------------------------------------------
class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    api: ControlAPI


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the serve's own activity lines are the log."""

    def _reply(self, status: int, payload: object) -> None:
        body = json.dumps(payload, indent=1).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._reply(status, {"error": message, "status": status})

    def _handle(self) -> None:
        api = self.server.api
        path = self.path.split("?", 1)[0].rstrip("/").replace("%2F", "/").replace("%2f", "/")
        path = path or "/"
        try:
            body = self._body()
        except APIError as error:
            self._error(error.status, str(error))
            return
        if self.command == "GET" and path == "/openapi.json":
            self._reply(200, openapi(api.url))
            return
        if not api.authorized(self.headers.get("Authorization", "")):
            self._error(401, "Authorization: Bearer <token> required (the token is in serve's "
                        "--json output and its state file)")  # fmt: skip
            return
        for route in ROUTES:
            match = route.pattern.match(path)
            if match is None:
                continue
            if route.method != self.command:
                continue
            params = {k: unquote(v) for k, v in match.groupdict().items()}
            self._run(route, params, body)
            return
        methods = [r.method for r in ROUTES if r.pattern.match(path)]
        if methods:
            self._error(405, f"{self.command} {path}: allowed methods: {', '.join(methods)}")
        else:
            known = ", ".join(sorted({r.path for r in ROUTES}))
            self._error(404, f"{path}: no such resource; paths: {known}, /openapi.json")

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise APIError(413, f"body of {length} bytes: at most {MAX_BODY_BYTES}")
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as error:
            raise APIError(400, f"body: not JSON: {error}") from None
        if not isinstance(body, dict):
            raise APIError(400, f"body={body!r}: expected a JSON object")
        return body

    def _run(self, route: Route, params: dict[str, str], body: dict[str, Any]) -> None:
        serve = self.server.api.serve
        try:
            with serve.lock:
                request = Request(serve.server, serve, params, body)
                result = route.handler(request)
        except APIError as error:
            self._error(error.status, str(error))
        except NotApplicable as error:
            self._error(409, str(error))
        except (ConfigError, ValueError) as error:
            self._error(400, str(error))
        except MailharnessError as error:
            self._error(409, str(error))
        else:
            self.server.api.serve.log(f"api: {route.method} {self.path}")
            self._reply(200, result)

    do_GET = _handle
    do_PUT = _handle
    do_POST = _handle
    do_PATCH = _handle
    do_DELETE = _handle


class ControlAPI:
    """The API server of one `Serve`; `start()` binds before returning."""

    def __init__(self, serve: Serve, *, host: str, port: int = 0) -> None:
        self.serve = serve
        # Hex, not urlsafe base64: a token starting with "-" (1 in 64 of those) reads as an
        # option to `mailharness ctl --token TOKEN` and to most other command lines.
        self.token = secrets.token_hex(24)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("_Bound", (_HTTPServer,), {"address_family": family})
        self._http: _HTTPServer = server_class((host, port), _Handler)
        self._http.api = self
        bound = self._http.server_address
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{bound[1]}"
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="mailharness-api", daemon=True
        )
        self._state_file: Path | None = None

    def authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip(), self.token)

    def start(self) -> ControlAPI:
        self._thread.start()
        return self

    def publish(self, state_file: Path | None) -> dict[str, Any]:
        """Write the state file `mailharness ctl` reads; the facts for `serve --json`."""
        path = state_file or default_state_file()
        _write_state(path, {"url": self.url, "token": self.token, "pid": os.getpid()})
        self._state_file = path
        return {"url": self.url, "token": self.token, "state_file": os.fspath(path)}

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()
        if self._state_file is not None:
            try:
                state = json.loads(self._state_file.read_text())
                if state.get("pid") == os.getpid():
                    self._state_file.unlink()
            except (OSError, ValueError):
                pass
