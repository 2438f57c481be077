"""The matrix: every client case of every scenario, against the probe or any connector command.

`mailharness matrix` serves each scenario in turn (fake backend by default), and for
each of its client cases either probes it or runs the user's connector, a command in
any language, with the case's settings as placeholders and environment variables:

    mailharness matrix --connector 'node check.js {protocol} {host} {port} {security}
        {user} {password} {insecure?--insecure}' --family cert -n 2 --html report.html

The connector's verdict is the first diagnosis code it prints on its last line that
has one (after the mapping file renames its own words), or else its exit code
(0: OK, anything else: a failure). Each row compares that with the scenario's
expected code; any mismatch makes the exit status 1.

Placeholders: {scenario} {case} {protocol} {host} {port} {security} {user}
{username} {password} {auth} {verify_certificate} (1/0) {tls} {ca_path}
{source_address} {timeout} {expected}, and {imap_host} {imap_port} {imap_security}
{smtp_host} {smtp_port} {smtp_security} (the case's listener for its own protocol,
the server's listener of the other). `{name?TEXT}` is TEXT when the value is set
and true (insecure, legacy_tls, xoauth2, source_address...), else nothing; an
argument that comes out empty is dropped. The same values are in the environment
as MAILHARNESS_HOST, MAILHARNESS_PORT... (see `ClientCase.environment`).

Mapping file (TOML), for a connector that names codes its own way:

    [codes]            # the connector's word = the mailharness code
    BAD_CERT = "CERT_UNTRUSTED"
    [exit_codes]       # used when it prints no code
    3 = "AUTH_FAILED"
"""

from __future__ import annotations

import concurrent.futures
import html
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from mailharness.cases import ClientCase, case_ids, client_cases
from mailharness.catalog import CATALOG
from mailharness.certs import MailCA
from mailharness.diagnosis import Diagnosis
from mailharness.probe import probe_case
from mailharness.scenarios import BACKENDS, Scenario
from mailharness.server import MailServer
from mailharness.servers.errors import ConfigError

__all__ = ["CodeMapping", "MatrixResult", "Row", "run_matrix", "select_scenarios"]

# A connector that hangs must not hang the matrix.
DEFAULT_CONNECTOR_TIMEOUT = 60.0
_CODE_TOKEN = re.compile(r"\b[A-Z][A-Z0-9_]+\b")
_CONDITIONAL = re.compile(r"\{(\w+)\?([^{}]*)\}")


@dataclass(frozen=True, slots=True)
class CodeMapping:
    """How a connector's own words and exit codes map to diagnosis codes."""

    codes: Mapping[str, str] = field(default_factory=dict)
    exit_codes: Mapping[int, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> CodeMapping:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"{path}: cannot read the mapping: {error}") from None
        unknown = set(data) - {"codes", "exit_codes"}
        if unknown:
            raise ConfigError(
                f"{path}: unknown table(s) {sorted(unknown)}; expected codes, exit_codes"
            )
        codes = {str(k): str(v) for k, v in data.get("codes", {}).items()}
        exits = {int(k): str(v) for k, v in data.get("exit_codes", {}).items()}
        known = {d.value for d in Diagnosis}
        for word, code in [*codes.items(), *((str(k), v) for k, v in exits.items())]:
            if code not in known:
                raise ConfigError(f"{path}: {word} = {code!r} is not a diagnosis code")
        return cls(codes, exits)

    def verdict(self, output: str, exit_code: int) -> str:
        """The code a connector reported: printed (last line with one) or by exit code."""
        known = {d.value for d in Diagnosis}
        for line in reversed(output.strip().splitlines()):
            token: str
            for token in _CODE_TOKEN.findall(line):
                if token in self.codes:
                    return str(self.codes[token])
                if token in known:
                    return token
        if exit_code in self.exit_codes:
            return self.exit_codes[exit_code]
        return "OK" if exit_code == 0 else f"exit {exit_code}"


@dataclass(frozen=True, slots=True)
class Row:
    """One client case: what was expected, what was observed, and whether they agree."""

    scenario: str
    case: str
    expected: str
    observed: str
    passed: bool
    seconds: float
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "case": self.case,
            "expected": self.expected,
            "observed": self.observed,
            "passed": self.passed,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
        }


@dataclass(slots=True)
class MatrixResult:
    rows: list[Row]
    skipped: dict[str, str]  # scenario -> why
    backend: str
    runner: str  # "probe" or the connector command
    seconds: float

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if not r.passed]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def summary(self) -> str:
        passed = len(self.rows) - len(self.failed)
        skipped = f", {len(self.skipped)} scenarios skipped" if self.skipped else ""
        return (
            f"{passed} passed, {len(self.failed)} failed{skipped} "
            f"({self.backend}, {self.seconds:.1f} s)"
        )

    def table(self) -> str:
        head = ("SCENARIO", "CASE", "EXPECTED", "OBSERVED", "RESULT", "TIME")
        body = [
            (
                r.scenario,
                r.case,
                r.expected,
                r.observed,
                "pass" if r.passed else "FAIL",
                f"{r.seconds:.2f}s",
            )
            for r in self.rows
        ]
        widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in (head, *body)
        ]
        lines += [f"{name}: skipped ({why})" for name, why in self.skipped.items()]
        return "\n".join([*lines, "", self.summary()])

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "runner": self.runner,
            "passed": len(self.rows) - len(self.failed),
            "failed": len(self.failed),
            "seconds": round(self.seconds, 3),
            "rows": [r.as_dict() for r in self.rows],
            "skipped": self.skipped,
        }

    def junit(self) -> str:
        """JUnit XML: one testcase per row, classname the scenario (CI systems read this)."""
        suite = ElementTree.Element(
            "testsuite",
            name="mailharness-matrix",
            tests=str(len(self.rows)),
            failures=str(len(self.failed)),
            skipped=str(len(self.skipped)),
            time=f"{self.seconds:.3f}",
        )
        for row in self.rows:
            case = ElementTree.SubElement(
                suite, "testcase", classname=row.scenario, name=row.case, time=f"{row.seconds:.3f}"
            )
            if not row.passed:
                failure = ElementTree.SubElement(
                    case, "failure", message=f"expected {row.expected}, observed {row.observed}"
                )
                failure.text = row.detail
        for name, why in self.skipped.items():
            case = ElementTree.SubElement(suite, "testcase", classname=name, name="*")
            ElementTree.SubElement(case, "skipped", message=why)
        return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True)

    def html(self) -> str:
        """One self-contained page (inline CSS, no scripts, no external resources)."""
        e = html.escape
        rows = "\n".join(
            f'<tr class="{"pass" if r.passed else "fail"}"><td>{e(r.scenario)}</td>'
            f"<td>{e(r.case)}</td><td>{e(r.expected)}</td><td>{e(r.observed)}</td>"
            f'<td class="result">{"pass" if r.passed else "FAIL"}</td>'
            f"<td>{r.seconds:.2f}s</td><td><pre>{e(r.detail)}</pre></td></tr>"
            for r in self.rows
        )
        skipped = "".join(f"<li>{e(n)}: {e(w)}</li>" for n, w in self.skipped.items())
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mailharness matrix</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; vertical-align: top; }}
tr.pass .result {{ color: #070; }} tr.fail {{ background: #fdd; }} tr.fail .result {{ color: #b00;
font-weight: bold; }}
pre {{ margin: 0; white-space: pre-wrap; max-width: 50em; }}
</style></head><body>
<h1>mailharness matrix</h1>
<p id="summary">{e(self.summary())}</p>
<p>runner: <code>{e(self.runner)}</code></p>
<table id="results"><thead><tr><th>scenario</th><th>case</th><th>expected</th>
<th>observed</th><th>result</th><th>time</th><th>detail</th></tr></thead>
<tbody>
{rows}
</tbody></table>
{f"<h2>Skipped</h2><ul>{skipped}</ul>" if skipped else ""}
</body></html>
"""


def select_scenarios(
    family: str | None = None, patterns: Iterable[str] = (), backend: str = "fake"
) -> tuple[list[Scenario], dict[str, str]]:
    """The catalog's static scenarios by family and -k patterns; those the backend skips, why."""
    chosen = list(CATALOG.values()) if family is None else CATALOG.family(family)
    chosen = [s for s in chosen if not s.dynamic]
    pats = list(patterns)
    if pats:
        chosen = [s for s in chosen if _selected(s.name, pats) or _any_case_selected(s, pats)]
    skipped = {}
    runnable = []
    for s in chosen:
        if backend in s.backends:
            runnable.append(s)
        else:
            skipped[s.name] = s.fake_only_reason or f"not served on {backend}"
    return runnable, skipped


def _selected(text: str, patterns: list[str]) -> bool:
    """-k: substrings; any positive one must match, no `not X` may match."""
    positive = [p for p in patterns if not p.startswith("not ")]
    negative = [p[4:] for p in patterns if p.startswith("not ")]
    if any(n in text for n in negative):
        return False
    return not positive or any(p in text for p in positive)


def _any_case_selected(scenario: Scenario, patterns: list[str]) -> bool:
    return any(_selected(f"{scenario.name}/{c}", patterns) for c in case_ids(scenario))


# --- running one case ----------------------------------------------------------------------
def placeholders(case: ClientCase, server: MailServer) -> dict[str, str]:
    """The values a connector template and its environment get for one case."""
    values = {k.removeprefix("MAILHARNESS_").lower(): v for k, v in case.environment().items()}
    values["user"] = case.username
    values["insecure"] = "" if case.verify_certificate else "1"
    values["legacy_tls"] = "" if case.tls == "default" else "1"
    values["xoauth2"] = "1" if case.auth == "xoauth2" else ""
    values["verify_certificate"] = "1" if case.verify_certificate else ""
    for protocol in ("imap", "smtp"):
        if protocol == case.protocol:
            host, port, security = case.host, str(case.port), case.security.value
        else:
            endpoints = list(getattr(server, protocol))
            same = [e for e in endpoints if e.security is case.security] or endpoints
            if same:
                host, port, security = same[0].host, str(same[0].port), same[0].security.value
            else:
                host, port, security = "", "", ""
        values[f"{protocol}_host"] = host
        values[f"{protocol}_port"] = port
        values[f"{protocol}_security"] = security
    return values


def command_for(template: str, values: Mapping[str, str]) -> list[str]:
    """The argv of a connector template, each argument formatted; empty ones dropped."""
    argv = []
    for token in shlex.split(template):
        token = _CONDITIONAL.sub(lambda m: m.group(2) if values.get(m.group(1)) else "", token)
        try:
            formatted = token.format_map(values)
        except KeyError as error:
            raise ConfigError(
                f"--connector: unknown placeholder {{{error.args[0]}}}; known: "
                + ", ".join(sorted(values))
            ) from None
        if formatted:
            argv.append(formatted)
    return argv


def _run_connector(
    template: str,
    case: ClientCase,
    server: MailServer,
    mapping: CodeMapping,
    timeout: float,
) -> tuple[str, str]:
    values = placeholders(case, server)
    argv = command_for(template, values)
    env = {**os.environ, **case.environment()}
    env.update(
        {
            f"MAILHARNESS_{k.upper()}": v
            for k, v in values.items()
            if k.startswith(("imap_", "smtp_"))
        }
    )
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        return "TIMEOUT", f"the connector ran over {timeout:g} s"
    except OSError as error:
        return "NOT_RUN", f"cannot run {argv[0]!r}: {error}"
    output = (done.stdout + done.stderr).strip()
    verdict = mapping.verdict(done.stdout, done.returncode)
    return verdict, output[-2000:]


def _passes(expected: str, observed: str, require_code: bool) -> bool:
    if observed == expected:
        return True
    # Only an exit status: it can tell success from failure, nothing finer (and a crash
    # looks like a refusal: `--require-code` makes a printed code mandatory).
    return observed.startswith("exit ") and expected != "OK" and not require_code


def _run_scenario(
    scenario: Scenario,
    *,
    ca: MailCA,
    backend: str,
    connector: str | None,
    mapping: CodeMapping,
    timeout: float,
    patterns: list[str],
    require_code: bool,
    on_row: Callable[[Row], None],
) -> list[Row]:
    rows = []
    server = scenario.serve(ca=ca, backend=backend)
    try:
        for case in client_cases(scenario, server):
            if patterns and not _selected(f"{scenario.name}/{case.id}", patterns):
                continue
            start = time.monotonic()
            expected = case.expected.diagnosis.value
            if connector is None:
                report = probe_case(case, scan=False)
                observed, detail = report.diagnosis.value, str(report.outcome)
            else:
                observed, detail = _run_connector(connector, case, server, mapping, timeout)
            row = Row(
                scenario.name,
                case.id,
                expected,
                observed,
                _passes(expected, observed, require_code),
                time.monotonic() - start,
                detail,
            )
            rows.append(row)
            on_row(row)
    finally:
        server.stop()
    return rows


def run_matrix(
    scenarios: Iterable[Scenario],
    *,
    backend: str = "fake",
    connector: str | None = None,
    mapping: CodeMapping | None = None,
    jobs: int = 1,
    timeout: float = DEFAULT_CONNECTOR_TIMEOUT,
    patterns: Iterable[str] = (),
    skipped: Mapping[str, str] | None = None,
    require_code: bool = False,
    on_row: Callable[[Row], None] = lambda row: None,
) -> MatrixResult:
    """Serve each scenario and judge each of its cases; rows in catalog order.

    `jobs` scenarios run at once (each on its own server and ports); a scenario's
    own cases run one after another on its server, as the catalog's tests run them.
    """
    chosen = list(scenarios)
    mapping = mapping or CodeMapping()
    pats = list(patterns)
    start = time.monotonic()
    lock = threading.Lock()

    def report(row: Row) -> None:
        with lock:
            on_row(row)

    with MailCA() as ca:

        def one(s: Scenario) -> list[Row]:
            return _run_scenario(
                s,
                ca=ca,
                backend=backend,
                connector=connector,
                mapping=mapping,
                timeout=timeout,
                patterns=pats,
                require_code=require_code,
                on_row=report,
            )

        if jobs <= 1:
            results = [one(s) for s in chosen]
        else:
            with concurrent.futures.ThreadPoolExecutor(jobs, "matrix") as pool:
                results = list(pool.map(one, chosen))
    return MatrixResult(
        rows=[row for rows in results for row in rows],
        skipped=dict(skipped or {}),
        backend=backend,
        runner=connector or "probe",
        seconds=time.monotonic() - start,
    )


# --- command line ---------------------------------------------------------------------------
class _Progress:
    """A live bar on stderr when it is a terminal; one line per failure otherwise."""

    def __init__(self, total: int, stream: Any = sys.stderr) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self.stream = stream
        self.live = bool(getattr(stream, "isatty", lambda: False)())

    def __call__(self, row: Row) -> None:
        self.done += 1
        self.failed += not row.passed
        if self.live:
            width = 30
            filled = width * self.done // max(self.total, 1)
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(
                f"\r[{bar}] {self.done}/{self.total} {self.failed} failed  "
                f"{row.scenario}/{row.case}"[:100].ljust(100)
            )
        elif not row.passed:
            self.stream.write(
                f"FAIL {row.scenario}/{row.case}: expected {row.expected}, "
                f"observed {row.observed}\n"
            )
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


def add_arguments(parser: Any) -> None:
    """The `matrix` subcommand's arguments (harness/cli.py makes its parser)."""
    parser.description = (
        "Serve each scenario in turn and judge each client case with the probe "
        "or a connector command (placeholders {host} {port} {security} {user} {password}...; "
        "see docs/probe.md). Exit 0 when every case passes, 1 on any mismatch."
    )
    parser.add_argument(
        "--backend", default="fake", choices=BACKENDS, help="who serves the mail (fake)"
    )
    parser.add_argument("--family", default=None, help="only this scenario family")
    parser.add_argument(
        "-k",
        dest="patterns",
        action="append",
        default=[],
        metavar="TEXT",
        help="only scenario/case names containing TEXT ('not TEXT' excludes); repeatable",
    )
    parser.add_argument(
        "--connector", default=None, metavar="CMD", help="command template to run per case"
    )
    parser.add_argument("--mapping", default=None, metavar="FILE.toml", help="code renames")
    parser.add_argument(
        "--require-code",
        action="store_true",
        help="a row passes only on a printed code (an exit status alone never does)",
    )
    parser.add_argument("-n", dest="jobs", type=int, default=1, help="scenarios in parallel")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_CONNECTOR_TIMEOUT,
        help="seconds per connector run",
    )
    parser.add_argument(
        "--json", metavar="FILE", default=None, help="write a JSON report ('-': stdout)"
    )
    parser.add_argument("--junit", metavar="FILE", default=None, help="write JUnit XML")
    parser.add_argument("--html", metavar="FILE", default=None, help="write an HTML report")
    parser.set_defaults(run=run_cli)


def run_cli(args: Any) -> int:
    scenarios, skipped = select_scenarios(args.family, args.patterns, args.backend)
    if not scenarios:
        raise ConfigError("matrix: no scenario selected")
    mapping = CodeMapping.load(args.mapping) if args.mapping else CodeMapping()
    total = sum(
        1
        for s in scenarios
        for c in case_ids(s)
        if not args.patterns or _selected(f"{s.name}/{c}", args.patterns)
    )
    progress = _Progress(total)
    try:
        result = run_matrix(
            scenarios,
            backend=args.backend,
            connector=args.connector,
            mapping=mapping,
            jobs=args.jobs,
            timeout=args.timeout,
            patterns=args.patterns,
            skipped=skipped,
            require_code=args.require_code,
            on_row=progress,
        )
    finally:
        progress.close()
    if args.json == "-":
        print(json.dumps(result.as_dict(), indent=1))
    else:
        print(result.table())
    for path, text in (
        (args.json, json.dumps(result.as_dict(), indent=1)),
        (args.junit, result.junit()),
        (args.html, result.html()),
    ):
        if path and path != "-":
            Path(path).write_text(text)
    return result.exit_code
