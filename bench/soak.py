"""Soak: a long mixed IMAP and SMTP load while faults switch on and off, then a mailbox audit.

The server runs in a child process (so its RSS is its own) with fault fronts before
its plaintext listeners. The parent runs ``--clients`` client threads: SMTP senders
(alice -> bob) and IMAP workers (APPEND to alice's ``Soak`` folder, then SELECT,
FETCH, SEARCH and STORE on bob's INBOX). Every message carries a unique
Message-ID, and each client writes down what the server confirmed: ``ok`` when
SMTP said 250 after DATA or APPEND said OK, ``uncertain`` when the connection
failed mid-transaction (a fault may have cut it before or after the server
stored the mail).

Every ``--audit-seconds`` an auditor on the unfronted implicit-TLS listener reads
the Message-IDs of both mailboxes, counts them into the ledger and expunges them,
so the mail store stays small and RSS growth measures leaks, not kept mail.

The child cycles the faults every ``--switch-seconds``: none, latency, a random
drop mid-stream, maintenance (new connections refused with the real texts).

At the end: every ``ok`` message seen exactly once, no message seen twice, an
``uncertain`` one at most once, nothing seen that was never sent; memory after
the first audit (caches warm) and at the end, each read right after an audit has
expunged the mailboxes: live RSS (after a collection and malloc_trim) and allocated
Python blocks each grown under 10 %. Raw RSS, a high-water mark, is reported too.

    python bench/soak.py --minutes 10 --clients 20 --markdown docs/soak.md

Exit code 0 when the audit holds and live memory grew under 10 %, 1 otherwise.
Loopback only; the load stops by itself after ``--minutes``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import imaplib
import itertools
import json
import os
import platform
import random
import re
import smtplib
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ALICE = ("alice@example.test", "alice-password")
BOB = ("bob@example.test", "bob-password")
SOAK_FOLDER = "Soak"
MESSAGE_ID = re.compile(rb"Message-ID:\s*<([^>]+)>", re.IGNORECASE)
CLIENT_TIMEOUT = 10.0


# --- the server side (child process) ------------------------------------------------


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _memory() -> dict[str, int]:
    """RSS as it is, then what is live: after a collection and glibc's malloc_trim.

    Raw RSS is a high-water mark: neither pymalloc nor glibc hands every freed page
    back, so a burst of mail between two audits raises it for good. A leak shows in
    what stays allocated once the mailbox is expunged: the live RSS and the number of
    allocated Python blocks, which decide the verdict.
    """
    raw = _rss_kib()
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return {"rss_kib": raw, "live_kib": _rss_kib(), "blocks": sys.getallocatedblocks()}


def serve_child(switch_seconds: float) -> None:
    """Serve with fronted plaintext listeners; answer ``rss``/``stop`` lines on stdin."""
    from mailharness.server import MailConfig, MailServer
    from mailharness.servers.faults import DropAfter, Latency
    from mailharness.servers.imap import IMAPSettings
    from mailharness.servers.smtp import SMTPSettings

    # Plaintext listeners that take credentials (the load), implicit TLS for the audit.
    config = MailConfig(
        imap=IMAPSettings(plaintext_auth_requires_tls=False),
        smtp=SMTPSettings(starttls_required=False),
        imap_listeners=("none", "implicit"),
        smtp_listeners=("none", "implicit"),
        faults={"imap/none": (), "smtp/none": ()},
    )
    phases: list[tuple[str, Any]] = [
        ("none", ()),
        ("latency 20 ms", (Latency(ms=20),)),
        ("drop mid-stream (p=0.2)", (DropAfter(bytes=1500, probability=0.2),)),
        ("maintenance", "maintenance"),
    ]
    with MailServer(config) as server:
        server.store.user(ALICE[0]).create(SOAK_FOLDER)
        ready = {
            "imap": server.imap.none.port,
            "smtp": server.smtp.none.port,
            "imaps": server.imap.implicit.port,
            "ca": str(server.ca.ca_path),
            "rss_kib": _rss_kib(),
        }
        print(json.dumps(ready), flush=True)
        stop = threading.Event()
        switched: Counter[str] = Counter()

        def cycle() -> None:
            for name, faults in itertools.cycle(phases):
                if faults == "maintenance":
                    server.set_maintenance(True)
                else:
                    for listener in ("imap/none", "smtp/none"):
                        server.faults(listener).set(*faults)
                switched[name] += 1
                if stop.wait(switch_seconds):
                    break
                if faults == "maintenance":
                    server.set_maintenance(False)
            server.set_maintenance(False)
            for listener in ("imap/none", "smtp/none"):
                server.faults(listener).clear()

        switcher = threading.Thread(target=cycle, daemon=True)
        switcher.start()
        for line in sys.stdin:
            command = line.strip()
            if command == "rss":
                print(json.dumps(_memory()), flush=True)
            elif command == "calm":
                stop.set()
                switcher.join()
                print(json.dumps({"switched": dict(switched)}), flush=True)
            elif command == "stop":
                errors = [str(e) for e in server.errors]
                sessions = len(server.transcripts)
                print(json.dumps({"errors": errors, "transcripts": sessions}), flush=True)
                break
        stop.set()


# --- the client side (parent) ---------------------------------------------------------


@dataclass
class Ledger:
    """What the server confirmed, what is uncertain, and what the audits found."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: set[str] = field(default_factory=set)
    uncertain: set[str] = field(default_factory=set)
    seen: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    operations: Counter[str] = field(default_factory=Counter)

    def confirm(self, message_id: str, confirmed: bool) -> None:
        with self.lock:
            (self.ok if confirmed else self.uncertain).add(message_id)

    def error(self, exc: BaseException) -> None:
        with self.lock:
            self.errors[type(exc).__name__] += 1

    def count(self, operation: str) -> None:
        with self.lock:
            self.operations[operation] += 1


def _message(sender: str, recipient: str, message_id: str) -> bytes:
    body = ("soak line " * 8 + "\r\n") * 12  # about 1 KiB
    return (
        f"From: {sender}\r\nTo: {recipient}\r\nSubject: soak {message_id}\r\n"
        f"Message-ID: <{message_id}>\r\n\r\n{body}"
    ).encode()


def smtp_client(number: int, port: int, deadline: float, ledger: Ledger) -> None:
    sequence = itertools.count()
    while time.monotonic() < deadline:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=CLIENT_TIMEOUT) as client:
                client.login(*ALICE)
                for _ in range(random.randint(1, 20)):
                    if time.monotonic() >= deadline:
                        break
                    message_id = f"smtp-{number}-{next(sequence)}@soak"
                    try:
                        client.sendmail(ALICE[0], [BOB[0]], _message(ALICE[0], BOB[0], message_id))
                    except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused):
                        raise  # a refusal stores nothing: if the audit finds it, that is a bug
                    except Exception:  # cut mid-transaction: stored or not
                        ledger.confirm(message_id, False)
                        raise
                    ledger.confirm(message_id, True)
                    ledger.count("smtp send")
        except (OSError, smtplib.SMTPException) as exc:
            ledger.error(exc)
            time.sleep(0.05)  # a refused or dropped client retries, as a connector would


def imap_client(number: int, port: int, deadline: float, ledger: Ledger) -> None:
    sequence = itertools.count()
    while time.monotonic() < deadline:
        try:
            with imaplib.IMAP4("127.0.0.1", port, timeout=CLIENT_TIMEOUT) as client:
                client.login(*ALICE)
                for _ in range(random.randint(1, 10)):
                    if time.monotonic() >= deadline:
                        break
                    message_id = f"imap-{number}-{next(sequence)}@soak"
                    try:
                        status, _ = client.append(
                            SOAK_FOLDER, None, None, _message(ALICE[0], ALICE[0], message_id)
                        )
                    except Exception:
                        ledger.confirm(message_id, False)
                        raise
                    if status == "OK":
                        ledger.confirm(message_id, True)
                        ledger.count("imap append")
                    client.select("INBOX")
                    client.fetch("1:*", "(FLAGS RFC822.SIZE)")
                    client.search(None, "SUBJECT", "soak")
                    client.store("1:*", "+FLAGS", "\\Seen")
                    ledger.count("imap select+fetch+search+store")
                client.logout()
        except (OSError, imaplib.IMAP4.error) as exc:
            ledger.error(exc)
            time.sleep(0.05)


def audit(port: int, ca: str, ledger: Ledger) -> int:
    """Count and expunge every message of both mailboxes; retried through maintenance."""
    while True:
        try:
            return _audit_once(port, ca, ledger)
        except imaplib.IMAP4.error:
            time.sleep(0.5)  # maintenance: the server refuses everyone for a while


def _audit_once(port: int, ca: str, ledger: Ledger) -> int:
    context = ssl.create_default_context(cafile=ca)
    found = 0
    for (login, password), folder in ((BOB, "INBOX"), (ALICE, SOAK_FOLDER)):
        with imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=context, timeout=120) as client:
            client.login(login, password)
            client.select(folder)
            _, data = client.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            ids: list[str] = []
            top = 0
            for item in data:
                if isinstance(item, tuple):
                    uid = re.search(rb"UID (\d+)", item[0])
                    match = MESSAGE_ID.search(item[1])
                    if uid:
                        top = max(top, int(uid.group(1)))
                    if match:
                        ids.append(match.group(1).decode())
            if top:
                # A UID range, not a list: the command stays short however much arrived,
                # and mail that arrives meanwhile has higher UIDs and waits for next time.
                client.uid("STORE", f"1:{top}", "+FLAGS.SILENT", "(\\Deleted)")
                client.uid("EXPUNGE", f"1:{top}")
            client.logout()
        with ledger.lock:  # counted only once gone, so a retried audit counts nothing twice
            ledger.seen.update(ids)
        found += len(ids)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--switch-seconds", type=float, default=15.0)
    parser.add_argument("--audit-seconds", type=float, default=60.0)
    parser.add_argument("--markdown", type=Path, help="write the result table here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        serve_child(args.switch_seconds)
        return 0

    child = subprocess.Popen(
        [sys.executable, __file__, "--child", "--switch-seconds", str(args.switch_seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None

    def ask(command: str) -> dict[str, Any]:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(command + "\n")
        child.stdin.flush()
        reply: dict[str, Any] = json.loads(child.stdout.readline())
        return reply

    try:
        ready = json.loads(child.stdout.readline())
        ledger = Ledger()
        started = time.monotonic()
        deadline = started + args.minutes * 60
        threads = []
        for number in range(args.clients):
            if number % 2:
                target, port = imap_client, ready["imap"]
            else:
                target, port = smtp_client, ready["smtp"]
            thread = threading.Thread(target=target, args=(number, port, deadline, ledger))
            thread.start()
            threads.append(thread)
        rss_boot = ready["rss_kib"]
        warm: dict[str, int] | None = None
        audited = 0
        while time.monotonic() < deadline:
            time.sleep(min(args.audit_seconds, max(0.0, deadline - time.monotonic())))
            audited += audit(ready["imaps"], ready["ca"], ledger)
            now = ask("rss")
            if warm is None:
                warm = now
            elapsed = time.monotonic() - started
            print(
                f"{elapsed:6.0f} s  audited {audited:7d}  rss {now['rss_kib'] / 1024:7.1f} MiB  "
                f"live {now['live_kib'] / 1024:7.1f} MiB  blocks {now['blocks']:9d}  "
                f"errors {sum(ledger.errors.values())}",
                flush=True,
            )
        for thread in threads:
            thread.join()
        switched = ask("calm")["switched"]
        audited += audit(ready["imaps"], ready["ca"], ledger)
        end = ask("rss")
        final = ask("stop")
    finally:
        with contextlib.suppress(Exception):
            child.stdin.close()
        child.wait(timeout=30)

    warm = warm or end
    missing = sorted(ledger.ok - set(ledger.seen))
    duplicated = sorted(m for m, n in ledger.seen.items() if n > 1)
    unknown = sorted(set(ledger.seen) - ledger.ok - ledger.uncertain)
    lost_uncertain = len(ledger.uncertain - set(ledger.seen))
    growth = (end["rss_kib"] - warm["rss_kib"]) / warm["rss_kib"]
    live_growth = (end["live_kib"] - warm["live_kib"]) / warm["live_kib"]
    blocks_growth = (end["blocks"] - warm["blocks"]) / warm["blocks"]
    passed = (
        not missing
        and not duplicated
        and not unknown
        and live_growth < 0.10
        and blocks_growth < 0.10
    )
    stored_uncertain = len(ledger.uncertain) - lost_uncertain
    errors = ", ".join(f"{k}: {v}" for k, v in ledger.errors.most_common())
    rss = f"{rss_boot / 1024:.1f} / {warm['rss_kib'] / 1024:.1f} / {end['rss_kib'] / 1024:.1f} MiB"
    live = f"{warm['live_kib'] / 1024:.1f} / {end['live_kib'] / 1024:.1f} MiB"
    rows = [
        ("duration", f"{args.minutes:g} min, {args.clients} clients"),
        ("operations", ", ".join(f"{k}: {v}" for k, v in sorted(ledger.operations.items()))),
        ("messages confirmed by the server", str(len(ledger.ok))),
        ("messages cut by a fault (uncertain)", str(len(ledger.uncertain))),
        ("  of those stored / not stored", f"{stored_uncertain} / {lost_uncertain}"),
        ("confirmed but missing", str(len(missing))),
        ("stored twice", str(len(duplicated))),
        ("stored but never sent", str(len(unknown))),
        ("client errors (injected faults)", errors),
        ("fault phases switched", ", ".join(f"{k}: {v}" for k, v in switched.items())),
        ("server errors recorded", str(len(final["errors"]))),
        ("transcripts retained at the end", str(final["transcripts"])),
        ("RSS at start / after first audit / end (high-water mark)", rss),
        ("RSS growth since first audit (high-water mark)", f"{growth:+.1%}"),
        ("live RSS after first audit / end (collected, malloc_trim)", live),
        ("live RSS growth (verdict: under 10 %)", f"{live_growth:+.1%}"),
        (
            "allocated Python blocks after first audit / end (verdict: under 10 %)",
            f"{warm['blocks']} / {end['blocks']} ({blocks_growth:+.1%})",
        ),
        ("verdict", "PASS" if passed else "FAIL"),
    ]
    table = "| what | result |\n| --- | --- |\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)
    print(table)
    for text in final["errors"][:10]:
        print("server error:", text)
    if args.markdown:
        command = " ".join(["python", "bench/soak.py", *sys.argv[1:]])
        machine = f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}"
        args.markdown.write_text(
            f"# Soak result\n\nCommand: `{command}`\n\nMachine: {machine}; "
            f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n\n{table}"
        )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
