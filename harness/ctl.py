"""`mailharness ctl`: the control API of a running `serve --api`, from a shell.

It finds the API in the state file serve writes (`--state`, else the default
path of `mailharness.control.default_state_file`), or takes `--url` and
`--token`. Each verb is one API call; the reply is printed as JSON.

    mailharness ctl status
    mailharness ctl fault imap/implicit refuse              # add a fault
    mailharness ctl fault imap/implicit latency ms=200 --replace
    mailharness ctl clear imap/implicit
    mailharness ctl maintenance on
    mailharness ctl set smtp send_rate='{"count": 2, "per_seconds": 60}'
    mailharness ctl user alice@example.test password=new-secret disabled=true
    mailharness ctl quota alice@example.test --bytes 1000
    mailharness ctl accounts login_rate='{"count": 3, "per_seconds": 60}'
    mailharness ctl add-user address=carol@example.test password=carol-password
    mailharness ctl deliver alice@example.test message.eml [--mailbox Archive]
    mailharness ctl sessions | session 3 | messages | message 0 | mailboxes alice@example.test
    mailharness ctl call GET /openapi.json                  # any route
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mailharness.servers.errors import ConfigError

# Long enough for a reset of a Dovecot backend on a loaded machine.
REQUEST_TIMEOUT = 30.0


def add_arguments(ctl: argparse.ArgumentParser) -> None:
    """The `ctl` subcommand's arguments (harness/cli.py makes its parser)."""
    ctl.set_defaults(run=run)
    ctl.add_argument("--state", default=None, help="serve's state file (default: see docs)")
    ctl.add_argument("--url", default=None, help="the API's URL (instead of the state file)")
    ctl.add_argument("--token", default=None, help="the API's bearer token (with --url)")
    verbs = ctl.add_subparsers(dest="verb", required=True)
    verbs.add_parser("status", help="what is served")
    verbs.add_parser("faults", help="the faults in force, by listener")
    fault = verbs.add_parser("fault", help="add (or --replace with) a fault on a listener")
    fault.add_argument("listener", help="e.g. imap/implicit")
    fault.add_argument("kind", help="e.g. refuse, latency, tls-version, drop-after")
    fault.add_argument("fields", nargs="*", help="FIELD=VALUE (JSON values, or text)")
    fault.add_argument("--replace", action="store_true", help="replace the listener's faults")
    clear = verbs.add_parser("clear", help="clear a listener's faults")
    clear.add_argument("listener")
    for name, what in (("maintenance", "maintenance greeting"), ("auth-outage", "auth outage")):
        switch = verbs.add_parser(name, help=f"{what} on or off")
        # Not "state": that is --state's dest, and a subcommand's value would replace it.
        switch.add_argument("switch", metavar="state", choices=("on", "off"))
    accounts = verbs.add_parser(
        "accounts", help="auth policy: lockout=..., login_rate=..., backend_down=... (none: show)"
    )
    accounts.add_argument("fields", nargs="*", help="FIELD=VALUE (JSON values, or text)")
    verbs.add_parser("announce-shutdown", help="BYE / 421 to every open session")
    settings = verbs.add_parser("set", help="change imap or smtp settings")
    settings.add_argument("protocol", choices=("imap", "smtp"))
    settings.add_argument("fields", nargs="*", help="FIELD=VALUE (JSON values, or text)")
    show = verbs.add_parser("settings", help="imap or smtp settings in force")
    show.add_argument("protocol", choices=("imap", "smtp"))
    verbs.add_parser("users", help="the users")
    add_user = verbs.add_parser("add-user", help="add a user: address=... password=... ...")
    add_user.add_argument("fields", nargs="+", help="FIELD=VALUE (JSON values, or text)")
    deliver = verbs.add_parser("deliver", help="put a message (a file, - for stdin) in a mailbox")
    deliver.add_argument("login")
    deliver.add_argument("file")
    deliver.add_argument("--mailbox", default="INBOX")
    user = verbs.add_parser("user", help="change a user: password=..., disabled=true, ...")
    user.add_argument("login")
    user.add_argument("fields", nargs="+", help="FIELD=VALUE (JSON values, or text)")
    quota = verbs.add_parser("quota", help="limit a user's mailbox (omitted: no limit)")
    quota.add_argument("login")
    quota.add_argument("--bytes", type=int, default=None, dest="storage_bytes")
    quota.add_argument("--messages", type=int, default=None)
    verbs.add_parser("reset", help="forget sessions, mail and changes; re-apply the scenario")
    verbs.add_parser("sessions", help="sessions kept, with their logins")
    session = verbs.add_parser("session", help="one session's transcript")
    session.add_argument("id", type=int)
    session.add_argument("--text", action="store_true", help="print the transcript text only")
    verbs.add_parser("messages", help="captured SMTP messages")
    message = verbs.add_parser("message", help="one captured message")
    message.add_argument("index", type=int)
    mailboxes = verbs.add_parser("mailboxes", help="a user's mailboxes and messages")
    mailboxes.add_argument("login")
    call = verbs.add_parser("call", help="any API route: METHOD PATH [JSON body]")
    call.add_argument("method", choices=("GET", "PUT", "POST", "PATCH", "DELETE"))
    call.add_argument("path")
    call.add_argument("body", nargs="?", default=None)


def fields(pairs: list[str]) -> dict[str, Any]:
    """FIELD=VALUE pairs; a value that parses as JSON is taken as JSON, else as text."""
    result: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"{pair!r}: expected FIELD=VALUE, e.g. ms=200 or disabled=true")
        try:
            result[name] = json.loads(value)
        except ValueError:
            result[name] = value
    return result


def request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    """The API call of one verb: method, path, body."""
    verb = args.verb
    if verb == "status":
        return "GET", "/status", None
    if verb == "faults":
        return "GET", "/faults", None
    if verb == "fault":
        body = {"faults": [{"kind": args.kind, **fields(args.fields)}]}
        return ("PUT" if args.replace else "POST"), f"/faults/{args.listener}", body
    if verb == "clear":
        return "DELETE", f"/faults/{args.listener}", None
    if verb in ("maintenance", "auth-outage"):
        return "PUT", f"/{verb}", {"on": args.switch == "on"}
    if verb == "accounts":
        if not args.fields:
            return "GET", "/accounts", None
        return "PATCH", "/accounts", fields(args.fields)
    if verb == "announce-shutdown":
        return "POST", "/announce-shutdown", None
    if verb == "set":
        return "PATCH", f"/settings/{args.protocol}", fields(args.fields)
    if verb == "settings":
        return "GET", f"/settings/{args.protocol}", None
    if verb == "users":
        return "GET", "/users", None
    if verb == "add-user":
        return "POST", "/users", fields(args.fields)
    if verb == "deliver":
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        message: dict[str, Any] = {"message": text, "mailbox": args.mailbox}
        return "POST", f"/mailboxes/{quote(args.login)}", message
    if verb == "user":
        return "PATCH", f"/users/{quote(args.login)}", fields(args.fields)
    if verb == "quota":
        body = {"storage_bytes": args.storage_bytes, "messages": args.messages}
        return "PUT", f"/users/{quote(args.login)}/quota", body
    if verb == "reset":
        return "POST", "/reset", None
    if verb == "sessions":
        return "GET", "/sessions", None
    if verb == "session":
        return "GET", f"/sessions/{args.id}", None
    if verb == "messages":
        return "GET", "/messages", None
    if verb == "message":
        return "GET", f"/messages/{args.index}", None
    if verb == "mailboxes":
        return "GET", f"/mailboxes/{quote(args.login)}", None
    try:
        raw: dict[str, Any] | None = None if args.body is None else json.loads(args.body)
    except ValueError as error:
        raise ConfigError(f"body={args.body!r}: not JSON: {error}") from None
    return args.method, args.path, raw


def locate(args: argparse.Namespace) -> tuple[str, str]:
    """The API's URL and token: from the flags, else from serve's state file."""
    if args.url is not None:
        if args.token is None:
            raise ConfigError("--url needs --token (serve prints it in --json and its state file)")
        return args.url.rstrip("/"), args.token
    from mailharness.control import default_state_file  # control imports the whole server

    path = Path(args.state) if args.state else default_state_file()
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"no running `mailharness serve --api` found: {path} does not exist "
            "(pass --state FILE, or --url and --token)"
        ) from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"state file {path}: unreadable: {error}") from None
    return str(state["url"]), str(state["token"])


def run(args: argparse.Namespace) -> int:
    url, token = locate(args)
    method, path, body = request(args)
    data = None if body is None else json.dumps(body).encode()
    call = urllib.request.Request(url + path, data=data, method=method)
    call.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        call.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(call, timeout=REQUEST_TIMEOUT) as reply:
            payload = json.loads(reply.read())
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read()).get("error", error.reason)
        except ValueError:
            message = error.reason
        print(f"mailharness ctl: {error.code}: {message}", file=sys.stderr)
        return 1
    except urllib.error.URLError as error:
        print(f"mailharness ctl: cannot reach {url}: {error.reason}", file=sys.stderr)
        return 1
    if args.verb == "session" and args.text:
        print(payload["text"])
    else:
        print(json.dumps(payload, indent=2))
    return 0
