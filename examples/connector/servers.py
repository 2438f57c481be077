"""Presets the connector offers for well-known providers: a module named `servers`.

Named like mailharness's own servers/ folder on purpose: mailharness installs it as
`mailharness.servers`, so this project's `servers` is the one `import servers` finds.
"""

from __future__ import annotations

PRESETS = {
    "gmail": {
        "imap": ("imap.gmail.com", 993, "implicit"),
        "smtp": ("smtp.gmail.com", 587, "starttls"),
    },
    "outlook": {
        "imap": ("outlook.office365.com", 993, "implicit"),
        "smtp": ("smtp.office365.com", 587, "starttls"),
    },
}
