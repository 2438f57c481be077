"""docs/scenarios.md, generated from the catalog (a test keeps the file current).

python -m harness.docs > docs/scenarios.md
"""

from __future__ import annotations

from harness.catalog import CATALOG
from harness.scenarios import Family


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def scenarios_markdown() -> str:
    lines = [
        "# Scenario catalog",
        "",
        "Generated from `harness/catalog.py` by `python -m harness.docs`; do not edit by hand.",
        "Serve one with `mailharness serve --scenario NAME`, use one in pytest with",
        '`@pytest.mark.mail_scenario("NAME")`. "checked" scenarios are met by real clients in',
        '`tests/test_catalog.py`; "dynamic" ones by dedicated tests in',
        "`tests/test_catalog_dynamic.py`.",
        "",
    ]
    for family in Family:
        members = CATALOG.family(family)
        if not members:
            continue
        lines += [
            f"## {family.value}",
            "",
            "| name | requirement | server | a correct client sees "
            "| personality | backends | test |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for s in members:
            kind = "dynamic" if s.dynamic else f"checked ({len(s.expect)})"
            lines.append(
                f"| `{s.name}` | {_cell(s.requirement)} | {_cell(s.server)} | "
                f"{_cell(s.client_sees)} | {s.personality} | {', '.join(s.backends)} | {kind} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(scenarios_markdown(), end="")
