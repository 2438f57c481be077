"""`mailharness` command line: serve scenarios for a person (QA) or a script to use.

    mailharness serve                  # the healthy scenario, human-readable summary
    mailharness serve --json           # first stdout line: one JSON object (schema below)

`serve --json` schema (one line, then nothing else on stdout until exit):
    {"scenario": str, "pid": int, "ca_path": str, "cert": str,
     "endpoints": [{"protocol": "smtp"|"imap", "host": str, "port": int,
                    "security": "none"|"starttls"|"implicit"}, ...],
     "users": [{"address": str, "login": str, "password": str,
                "app_password": str|null, "oauth_token": str|null}, ...]}
It runs until SIGINT or SIGTERM, then stops every listener and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence

from harness.certs import MailCA
from harness.server import MailConfig, MailServer
from servers.errors import MailharnessError, choice_error

# The catalog arrives with the scenario issue; until then, the baseline.
SCENARIOS: dict[str, MailConfig] = {"healthy": MailConfig()}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailharness", description="Fake mail servers for testing inbox connectors."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a scenario until Ctrl-C or SIGTERM")
    serve.add_argument("--scenario", default="healthy", help="scenario name (default: healthy)")
    serve.add_argument("--json", action="store_true", help="print one JSON line of facts first")
    serve.add_argument(
        "--certs-dir",
        default=None,
        help="write the CA and leaves here (default: a private temp dir, removed at exit)",
    )
    return parser


def _human_summary(name: str, facts: dict[str, object]) -> str:
    lines = [f"mailharness: serving scenario {name!r} (pid {os.getpid()})", ""]
    for e in facts["endpoints"]:  # type: ignore[attr-defined]
        lines.append(f"  {e['protocol'].upper():5} {e['security']:9} {e['host']}:{e['port']}")
    lines.append("")
    for u in facts["users"]:  # type: ignore[attr-defined]
        extra = f"  app password: {u['app_password']}" if u["app_password"] else ""
        lines.append(f"  user {u['login']}  password: {u['password']}{extra}")
    lines += ["", f"  CA certificate to trust: {facts['ca_path']}", "", "Ctrl-C stops."]
    return "\n".join(lines)


def serve(args: argparse.Namespace) -> int:
    if args.scenario not in SCENARIOS:
        raise choice_error("--scenario", args.scenario, sorted(SCENARIOS))
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with (
            MailCA(args.certs_dir) as ca,
            MailServer(SCENARIOS[args.scenario], ca=ca) as server,
        ):
            facts = {"scenario": args.scenario, "pid": os.getpid(), **server.describe()}
            if args.json:
                print(json.dumps(facts), flush=True)
            else:
                print(_human_summary(args.scenario, facts), flush=True)
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args)
    except MailharnessError as error:
        print(f"mailharness: error: {error}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover - argparse enforces a command


if __name__ == "__main__":
    sys.exit(main())
