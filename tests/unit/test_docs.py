"""The documentation states facts the code holds: every setting shared/config.py declares is in the settings
page (docs/operations/settings.md), with its default, and the page names no variable the code does not read."""

from __future__ import annotations

import re

from shared.config import VARIABLES
from tests.support.docs import DOCS

SETTINGS_PAGE = DOCS / "operations" / "settings.md"


def settings_table() -> dict[str, str]:
    """variable -> its default as the page writes it (`empty`, a value, or another variable's name)."""
    rows: dict[str, str] = {}
    for line in SETTINGS_PAGE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([A-Z0-9_]+)`", cells[0])
        defaults = re.findall(r"`([^`]*)`|(empty)", cells[1])
        values = [a or b for a, b in defaults]
        # `A` / `B` | `1` / `2`: one default each; one default for several names: the same for each.
        for i, name in enumerate(names):
            rows[name] = values[i] if len(values) == len(names) else values[0]
    return rows


def written(default: object) -> str:
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    if default in ("", ()):
        return "empty"
    return str(default)


def test_every_setting_is_on_the_settings_page_and_nothing_else() -> None:
    table = settings_table()
    missing = sorted(set(VARIABLES) - set(table))
    assert not missing, f"docs/operations/settings.md does not list {missing}"
    unknown = sorted(set(table) - set(VARIABLES))
    assert not unknown, f"docs/operations/settings.md lists variables the code does not read: {unknown}"


def test_the_page_gives_each_setting_its_default() -> None:
    table = settings_table()
    for name, variable in VARIABLES.items():
        shown = table[name]
        # An empty default that means "another variable's value" is written as that variable's name.
        if shown in VARIABLES:
            assert written(variable.default) == "empty", (name, shown, variable.default)
            continue
        assert shown == written(variable.default), f"{name}: the page says {shown!r}, the code {variable.default!r}"
