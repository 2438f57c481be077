"""atheris: IMAP commands through Session.handle, logged in with a message selected.

python fuzz/fuzz_imap_session.py fuzz/corpus/imap -max_total_time=300
"""

import sys

import atheris

with atheris.instrument_imports():
    import fuzz.targets as targets


if __name__ == "__main__":
    atheris.Setup(sys.argv, targets.session)
    atheris.Fuzz()
