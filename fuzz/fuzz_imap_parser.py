"""atheris: the sans-IO IMAP parser. ``python fuzz/fuzz_imap_parser.py -max_total_time=300``"""

import sys

import atheris

with atheris.instrument_imports():
    import fuzz.targets as targets


def one(data: bytes) -> None:
    targets.parse(data, prelogin=bool(data[:1] == b"\x00"))


if __name__ == "__main__":
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
