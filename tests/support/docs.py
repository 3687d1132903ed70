"""The documentation's command blocks, as the tests run them (tests/system/test_docs_site.py and
tests/system/test_deploy.py).

A command block of docs/getting-started.md is preceded by a marker that says how the suite runs it:
`<!-- docs-check: stack -->` against a gateway and a worker the test starts, `<!-- docs-check: try-it -->`
as pasted, `./deploy/run.sh --detach` included. A block's lines starting with `# ` are output it must print.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
GETTING_STARTED = DOCS / "getting-started.md"

# A fenced block with the comment line (if any) right above it.
_BLOCK = re.compile(r"(?:<!-- docs-check: (?P<mark>[\w-]+) -->\n)?```(?P<lang>[\w-]*)\n(?P<body>.*?)^```", re.S | re.M)


@dataclass(frozen=True)
class Block:
    mark: str | None
    lang: str
    body: str

    @property
    def expected(self) -> list[str]:
        """The output the block promises: its lines starting with `# `."""
        return [line[2:] for line in self.body.splitlines() if line.startswith("# ")]


def blocks(text: str) -> list[Block]:
    return [Block(m["mark"], m["lang"], m["body"]) for m in _BLOCK.finditer(text)]


def command_blocks(text: str) -> list[Block]:
    """The blocks a reader pastes into a shell."""
    return [b for b in blocks(text) if b.lang in ("sh", "bash", "shell", "console", "")]


def try_it(text: str) -> Block:
    """The one block marked try-it."""
    found = [b for b in blocks(text) if b.mark == "try-it"]
    assert len(found) == 1, f"expected one try-it block, found {len(found)}"
    return found[0]
