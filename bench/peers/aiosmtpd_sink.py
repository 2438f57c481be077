"""aiosmtpd's own Controller with its Sink handler: what a user writes without a harness.

Plaintext, no AUTH, every message accepted and dropped. Prints {"port": N} once the
Controller is serving (its own readiness check), then serves until stdin closes.
"""

from __future__ import annotations

import json
import socket
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink


def main() -> int:
    with socket.socket() as probe:  # the Controller needs a port up front
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        print(json.dumps({"port": port}), flush=True)
        sys.stdin.read()
    finally:
        controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
