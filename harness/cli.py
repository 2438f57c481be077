"""`mailharness` command line: serve scenarios for a person (QA) or a script to use.

    mailharness serve                  # the healthy scenario, human-readable summary
    mailharness serve --scenario tls10-only
    mailharness serve --scenario customer.toml --json
    mailharness scenarios [--family tls] [--json]    # the catalog

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
import contextlib
import gc
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from mailharness.servers.errors import MailharnessError

# The catalog, the servers and their libraries are imported by the command that needs
# them, inside `_starting()` (see there).
if TYPE_CHECKING:
    from mailharness.server import MailConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailharness", description="Fake mail servers for testing inbox connectors."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a scenario until Ctrl-C or SIGTERM")
    serve.add_argument(
        "--scenario",
        default="healthy",
        help="scenario name or a .toml file describing a customer's setup (default: healthy)",
    )
    serve.add_argument(
        "--personality", default=None, help="speak as dovecot, gmail, outlook, yahoo or icloud"
    )
    serve.add_argument("--json", action="store_true", help="print one JSON line of facts first")
    serve.add_argument(
        "--certs-dir",
        default=None,
        help="write the CA and leaves here (default: a private temp dir, removed at exit)",
    )
    serve.add_argument(
        "--no-cert-cache",
        action="store_true",
        help="make a new CA for this run instead of reusing the one kept (private, 0700) "
        "in the user's cache dir",
    )
    serve.add_argument(
        "--uvloop",
        action="store_true",
        help="run on uvloop (the `fast` extra) for throughput; only for scenarios with "
        "plaintext listeners alone and no faults (others stay on asyncio's loop)",
    )
    listing = commands.add_parser("scenarios", help="list the scenario catalog")
    listing.add_argument("--family", default=None, help="only this family")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser


@contextlib.contextmanager
def _starting() -> Iterator[None]:
    """No garbage collection while starting: start-up makes tens of thousands of objects
    that live as long as the process (modules, classes, the catalog), and collecting
    among them cost about a tenth of `serve`'s start. After it, they are frozen out of
    every later collection (`gc.freeze`), so a long `serve` does not rescan them either."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.freeze()
            gc.enable()


def list_scenarios(args: argparse.Namespace) -> int:
    from mailharness.catalog import CATALOG
    from mailharness.scenarios import Family

    chosen = CATALOG.values() if args.family is None else CATALOG.family(args.family)
    if args.json:
        for s in chosen:
            print(
                json.dumps(
                    {
                        "name": s.name,
                        "family": s.family.value,
                        "requirement": s.requirement,
                        "server": s.server,
                        "client_sees": s.client_sees,
                        "personality": s.personality,
                        "backends": list(s.backends),
                    }
                )
            )
        return 0
    rows = [(s.name, s.family.value, s.requirement, s.client_sees) for s in chosen]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    print(f"{'NAME':{widths[0]}}  {'FAMILY':{widths[1]}}  REQUIREMENT / A CORRECT CLIENT SEES")
    for name, family, requirement, sees in rows:
        print(f"{name:{widths[0]}}  {family:{widths[1]}}  {requirement}")
        print(f"{'':{widths[0]}}  {'':{widths[1]}}    -> {sees}")
    families = ", ".join(f.value for f in Family)
    print(f"\n{len(rows)} scenarios; families: {families}")
    return 0


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


def _plain(config: MailConfig) -> bool:
    """Only plaintext listeners and no faults: where `serve --uvloop` may use uvloop.

    uvloop is opt-in because it is not asyncio: it starts reading right after
    `connection_made` (so an implicit-TLS ClientHello can slip past our handshake and the
    handshake hangs), and at fd exhaustion it neither logs nor backs off as asyncio does
    (tests/imap/test_hardening_imap.py waits for asyncio's line). Plaintext without faults
    is where it was proven to answer the same.
    """
    from mailharness.servers.listeners import Security

    if config.backend != "fake" or config.faults:
        return False
    return all(
        security is Security.NONE
        for protocol in ("imap", "smtp")
        if getattr(config, protocol) is not None
        for security in config.securities(protocol)
    )


def serve(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with contextlib.ExitStack() as running:
            with _starting():
                from mailharness.catalog import scenario
                from mailharness.certs import MailCA, default_cache_dir
                from mailharness.lifecycle import fastest_loop_factory
                from mailharness.scenarios import with_personality
                from mailharness.server import MailServer

                chosen = scenario(args.scenario)
                config = chosen.config
                if args.personality is not None:
                    config = with_personality(config, args.personality)
                cache = None if args.no_cert_cache else default_cache_dir()
                ca = running.enter_context(MailCA(args.certs_dir, cache=cache))
                fast = args.uvloop and _plain(config)
                server = running.enter_context(
                    MailServer(
                        config,
                        ca=ca,
                        label=chosen.name,
                        loop_factory=fastest_loop_factory() if fast else None,
                    )
                )
                if chosen.prepare is not None:
                    chosen.prepare(server)
                facts = {"scenario": chosen.name, "pid": os.getpid(), **server.describe()}
            if args.json:
                print(json.dumps(facts), flush=True)
            else:
                print(_human_summary(chosen.name, facts), flush=True)
                print(f"  {chosen.server}\n  a correct client sees: {chosen.client_sees}")
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
        if args.command == "scenarios":
            return list_scenarios(args)
    except MailharnessError as error:
        print(f"mailharness: error: {error}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover - argparse enforces a command


if __name__ == "__main__":
    sys.exit(main())
