"""`mailharness` command line: serve scenarios for a person (QA) or a script to use.

    mailharness serve                  # the healthy scenario, human-readable summary
    mailharness serve --scenario tls10-only --port-base 10140 --host 127.0.0.2
    mailharness serve --scenario customer.toml --json --api --fronts all
    mailharness serve --backend dovecot          # the same scenario on real Dovecot
    mailharness ctl fault imap/implicit refuse   # switch a running serve (see harness/ctl.py)
    mailharness scenarios [--family tls] [--json]    # the catalog

`serve --json` prints one line once serving, and one more after each SIGHUP reload,
and nothing else on stdout until exit (activity lines go to stderr):
    {"scenario": str, "pid": int, "source": "catalog"|str (the .toml path),
     "base": str|null (a file's base scenario), "backend": "fake"|"dovecot"|"docker",
     "host": str, "ca_path": str, "cert": str (the certificate variant),
     "personality": str,
     "endpoints": [{"protocol": "smtp"|"imap", "host": str, "port": int,
                    "security": "none"|"starttls"|"implicit"}, ...],
     "internal_listeners": [{"protocol", "host", "port", "security",
                             "role": str}, ...],   # opened, not for clients
     "users": [{"address": str, "login": str, "password": str,
                "app_password": str|null, "oauth_token": str|null}, ...],
     "faults": {listener: [{"kind": str, field: value, ...}, ...]},  # fronted listeners
     "cas": {"harness"|"unknown-ca"|"missing-intermediate"|"self-signed": str (PEM path)},
     "server_does": str, "client_sees": str,
     "api": null | {"url": str, "token": str, "state_file": str},
     "ui": null | {"url": str, "open": str}}   # open: the console URL carrying the token
Addresses: `--port-base N` serves imap/none at N, imap/starttls N+1, imap/implicit N+2,
smtp/none N+3, smtp/starttls N+4, smtp/implicit N+5, `--api` N+6, `--ui` N+7;
`--port LISTENER=PORT` fixes one. Signals: SIGINT and SIGTERM stop every listener and
exit 0; SIGHUP reloads a scenario file (same addresses) or resets a catalog scenario;
SIGUSR1 prints a status line to stderr; SIGUSR2 is logged and ignored.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Sequence

from mailharness.servers.errors import MailharnessError
from mailharness.servers.personality import PERSONALITIES

# Subcommands defined beside what they run: name -> (module, one-line help). The module's
# `add_arguments(parser)` fills the parser and sets `run` on the namespace. A module is
# imported only when its command is the one run (probe alone pulls in cryptography):
# `serve` must reach its greeting without them (issue 13).
TOOLS: dict[str, tuple[str, str]] = {
    "ctl": ("mailharness.ctl", "control a running `serve --api`"),
    "probe": ("mailharness.probe", "diagnose an IMAP and/or SMTP server, real or fake"),
    "matrix": ("mailharness.matrix", "run the probe or your connector against every scenario"),
}


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand argparse will pick: the first argument that is not an option."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; the arguments of TOOLS only for `command` (all when None)."""
    from mailharness.server import BACKENDS  # serve needs it anyway; tools may not

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
        "--personality",
        default=None,
        help="speak as " + ", ".join(PERSONALITIES) + " (outlook: Exchange Online; exchange: "
        "Exchange Server on premises)",
    )
    serve.add_argument("--json", action="store_true", help="print one JSON line of facts first")
    serve.add_argument(
        "--certs-dir",
        default=None,
        help="write the CAs to trust and every leaf here (default: a private temp dir, "
        "removed at exit)",
    )
    serve.add_argument(
        "--host", default=None, help="loopback address to listen on: 127.0.0.x or ::1"
    )
    serve.add_argument(
        "--port-base",
        type=int,
        default=None,
        help="fixed ports: imap/none=N, imap/starttls=N+1, imap/implicit=N+2, smtp/none=N+3, "
        "smtp/starttls=N+4, smtp/implicit=N+5, --api N+6, --ui N+7",
    )
    serve.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="LISTENER=PORT",
        help="a fixed port for one listener, e.g. imap/implicit=10993 (repeatable)",
    )
    serve.add_argument(
        "--backend", default=None, choices=BACKENDS, help="who serves the mail (default: fake)"
    )
    serve.add_argument(
        "--fronts",
        default=None,
        metavar="LISTENERS",
        help="serve these listeners (comma-separated, or 'all') through a fault front, so "
        "faults can be switched on them at run time",
    )
    serve.add_argument(
        "--api",
        nargs="?",
        type=int,
        const=0,
        default=None,
        metavar="PORT",
        help="start the control API on loopback (PORT, else N+6 with --port-base, else any)",
    )
    serve.add_argument(
        "--ui",
        nargs="?",
        type=int,
        const=0,
        default=None,
        metavar="PORT",
        help="start the web console on loopback (PORT, else N+7 with --port-base, else any); "
        "implies --api; "
        "open the URL it prints (it carries the API token once)",
    )
    serve.add_argument(
        "--state-file",
        default=None,
        help="where --api writes its URL and token for `mailharness ctl` (0600)",
    )
    serve.add_argument(
        "--quiet", action="store_true", help="no activity lines on stderr (one per session event)"
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
    _add_tool(commands, "ctl", command)
    listing = commands.add_parser("scenarios", help="list the scenario catalog")
    listing.add_argument("--family", default=None, help="only this family")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    _add_tool(commands, "probe", command)
    _add_tool(commands, "matrix", command)
    return parser


def _add_tool(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    command: str | None,
) -> None:
    module, help_text = TOOLS[name]
    tool = commands.add_parser(name, help=help_text)
    if command is None or command == name:
        importlib.import_module(module).add_arguments(tool)


def list_scenarios(args: argparse.Namespace) -> int:
    import json

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


def serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mailharness.serve import Serve, ServeOptions, parse_port_flags

    fronts = tuple(f.strip() for f in args.fronts.split(",") if f.strip()) if args.fronts else ()
    options = ServeOptions(
        host=args.host,
        port_base=args.port_base,
        ports=parse_port_flags(args.port),
        backend=args.backend,
        fronts=fronts,
    )
    options.check()
    return Serve(
        args.scenario,
        options,
        personality=args.personality,
        as_json=args.json,
        quiet=args.quiet,
        certs_dir=args.certs_dir,
        api_port=args.api,
        ui_port=args.ui,
        state_file=Path(args.state_file) if args.state_file else None,
        cert_cache=not args.no_cert_cache,
        uvloop=args.uvloop,
    ).run()


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    command = _command(arguments)
    # Loading a command allocates thousands of long-lived objects (classes, functions, the
    # catalog) and next to no garbage: the cyclic collector would run dozens of times for
    # nothing before serve's greeting (~5 ms, issue 13). It is on again before the
    # command runs; for `serve`, with what was loaded frozen (`gc.freeze`), else its
    # first collection walks all ~25,000 of those objects, still young (~3 ms before the
    # greeting). They thaw when serve returns (an in-process caller's included).
    collecting = gc.isenabled()
    gc.disable()
    frozen = False
    try:
        if command == "serve":
            # inspect and others load at their first use, not at import (harness/deferred.py)
            from mailharness.deferred import defer

            defer()
        args = _parser(command).parse_args(arguments)
        if args.command == "serve":
            import mailharness.serve  # noqa: F401 - loaded here, with the collector off

            frozen = collecting
    finally:
        if frozen:
            gc.freeze()
        if collecting:
            gc.enable()
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "scenarios":
            return list_scenarios(args)
        if hasattr(args, "run"):
            return int(args.run(args))
    except MailharnessError as error:
        print(f"mailharness: error: {error}", file=sys.stderr)
        return 2
    finally:
        if frozen:
            gc.unfreeze()
    return 2  # pragma: no cover - argparse enforces a command


if __name__ == "__main__":
    sys.exit(main())
