"""imaptest's stress throughput: our fake IMAP server beside native Dovecot 2.3.

    .venv/bin/python bench/bench_imaptest.py [--clients 10] [--secs 10] [--rounds 3]

imaptest (found or built as tests/imap/imaptest_tool.py says) runs in stress mode
(`mbox=FILE clients=N secs=S`, no `test=`): N clients on alice's INBOX, each picking
random commands (LOGIN, LIST, STATUS, SELECT, FETCH, STORE, EXPUNGE, APPEND, LOGOUT...)
and cross-checking every reply against what the others saw. Its "Totals" line counts
the commands completed; this script divides by the seconds and takes the median over
rounds. Every round starts each server afresh with the plaintext-only scenario (ours
in this process on its own loop thread, Dovecot as its own processes), and the
backends alternate within a round so both meet the same machine load. The mbox is the
suite's generated one (tests/imap/imaptest_tool.py `stress_mbox`, 60 varied messages).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailharness.catalog import CATALOG

from tests.imap.imaptest_tool import Imaptest, StressResult, Target, locate, stress_mbox

BACKENDS = ("dovecot", "fake")
LABELS = {"dovecot": "Dovecot 2.3 (native)", "fake": "ours (mailharness)"}
#: Columns: imaptest's short command names summed into one figure each.
COLUMNS = {
    "all commands": None,
    "LOGIN": ("Logi",),
    "SELECT": ("Sele",),
    "FETCH": ("Fetc", "Fet2"),
    "STORE": ("Stor",),
    "APPEND": ("Appe",),
}


@dataclass
class Runs:
    results: list[StressResult] = field(default_factory=list)

    def per_second(self, column: str, secs: int) -> float:
        names = COLUMNS[column]
        values = [
            sum(n for k, n in r.totals.items() if names is None or k in names) / secs
            for r in self.results
        ]
        return statistics.median(values)

    def errors(self) -> int:
        return int(statistics.median(len(r.errors) for r in self.results))


def run_once(tool: Imaptest, backend: str, mbox: Path, clients: int, secs: int) -> StressResult:
    server = CATALOG["plaintext-only"].serve(backend=backend)
    try:
        endpoint = server.imap.none
        user = server.config.users[0]
        target = Target(endpoint.host, endpoint.port, user.login or user.address, user.password)
        return tool.stress(target, mbox, clients=clients, secs=secs)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--secs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args = parser.parse_args()
    backends = args.backends.split(",")

    tool = locate()
    runs = {b: Runs() for b in backends}
    with tempfile.TemporaryDirectory() as tmp:
        mbox = Path(tmp) / "stress.mbox"
        mbox.write_bytes(stress_mbox())
        for round_ in range(args.rounds):
            for backend in backends if round_ % 2 == 0 else reversed(backends):
                result = run_once(tool, backend, mbox, args.clients, args.secs)
                runs[backend].results.append(result)
                total = sum(result.totals.values()) / args.secs
                print(
                    f"round {round_ + 1}: {backend}: {total:,.0f} commands/s, "
                    f"{len(result.errors)} Error: lines",
                    file=sys.stderr,
                )

    reference = runs.get("dovecot")
    print(
        f"imaptest stress mode, {args.clients} clients, {args.secs} s, "
        f"median of {args.rounds} rounds (commands completed per second; ratio vs Dovecot)\n"
    )
    print("| server | " + " | ".join(f"{c} /s" for c in COLUMNS) + " | `Error:` lines |")
    print("| --- | " + " | ".join("---:" for _ in COLUMNS) + " | ---: |")
    for backend in backends:
        cells = []
        for column in COLUMNS:
            value = runs[backend].per_second(column, args.secs)
            ratio = ""
            if reference is not None:
                base = reference.per_second(column, args.secs)
                ratio = f" ({value / base:.2f}x)" if base else ""
            cells.append(f"{value:,.0f}{ratio}")
        print(
            f"| {LABELS.get(backend, backend)} | "
            + " | ".join(cells)
            + f" | {runs[backend].errors():,} |"
        )


if __name__ == "__main__":
    main()
