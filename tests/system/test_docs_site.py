"""The documentation site (mkdocs.yml, docs/): it builds with --strict (no broken link or anchor, no page left
out of the navigation, nothing fetched from another site), and every command block of the getting-started page
runs against a real gateway and worker (`python -m gateway`, `python -m worker`) and prints what the page says.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from shared.config import Settings
from shared.customers.fields import FIELDS
from tests.support import docs, procs

REPO = docs.REPO
MKDOCS = [sys.executable, "-m", "mkdocs"]


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [*MKDOCS, "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_of_the_docs(root: Path) -> Path:
    """mkdocs.yml, docs/ and what the hooks read, copied to root (to break them without touching the repo)."""
    root.mkdir()
    shutil.copy2(REPO / "mkdocs.yml", root / "mkdocs.yml")
    shutil.copytree(REPO / "docs", root / "docs")
    (root / "deploy").mkdir()
    shutil.copy2(REPO / "deploy" / "mkdocs_hooks.py", root / "deploy" / "mkdocs_hooks.py")
    shutil.copytree(REPO / "examples" / "screenshots", root / "examples" / "screenshots")
    return root / "mkdocs.yml"


def test_the_site_builds_strictly_and_every_page_is_in_the_navigation(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = build(REPO / "mkdocs.yml", site)
    assert result.returncode == 0, result.stderr
    pages = {p.relative_to(REPO / "docs").with_suffix("") for p in (REPO / "docs").rglob("*.md")}
    assert {Path("index"), Path("getting-started"), Path("api"), Path("operations/settings")} <= pages
    for page in pages:
        built = site / ("index.html" if page == Path("index") else page / "index.html")
        assert built.exists(), f"{page}.md was not built"
    # The screenshots come from examples/screenshots/ (deploy/mkdocs_hooks.py) and every page image resolves.
    web_page = (site / "web-page" / "index.html").read_text()
    images = re.findall(r'<img[^>]*src="([^"]+)"', web_page)
    assert images and all((site / "web-page" / src).resolve().exists() for src in images), images
    # The customer fields' table is made from the field registry (deploy/mkdocs_hooks.py).
    importing = (site / "importing" / "index.html").read_text()
    for field in FIELDS:
        assert f"<td><code>{field.name}</code></td>\n<td>{field.max_length}</td>" in importing, field.name
    # Nothing is loaded from another site when a page is read (no fonts, scripts or styles from a CDN).
    for html in site.rglob("*.html"):
        text = html.read_text()
        assert not re.search(r'<(script|img)[^>]*src="(https?:)?//', text), html
        assert not re.search(r'<link[^>]*href="(https?:)?//', text), html


def test_a_broken_link_an_unknown_anchor_or_a_page_outside_the_navigation_fails_the_build(tmp_path: Path) -> None:
    """The validation settings of mkdocs.yml make --strict fail on each (else the test above proves little)."""
    cases = {
        "link": ("cli.md", "\nSee [the missing page](no-such-page.md).\n", "no-such-page.md"),
        "anchor": ("cli.md", "\nSee [nothing](api.md#no-such-heading).\n", "no-such-heading"),
        "page": ("orphan.md", "# Not in the navigation\n", "orphan.md"),
    }
    for name, (page, text, named) in cases.items():
        config = copy_of_the_docs(tmp_path / name)
        target = config.parent / "docs" / page
        target.write_text((target.read_text() if target.exists() else "") + text)
        result = build(config, tmp_path / name / "site")
        assert result.returncode != 0, f"{name}: the build passed\n{result.stderr}"
        assert named in result.stderr, f"{name}:\n{result.stderr}"


def test_every_command_block_of_getting_started_is_checked_by_the_suite() -> None:
    text = docs.GETTING_STARTED.read_text()
    blocks = docs.command_blocks(text)
    assert blocks, "no command block on the page"
    unmarked = [b.body.splitlines()[0] for b in blocks if b.mark not in ("stack", "try-it")]
    assert not unmarked, f"blocks without a <!-- docs-check: stack|try-it --> marker: {unmarked}"
    assert [b.mark for b in blocks].count("try-it") == 1
    for block in blocks:
        assert block.expected, f"a block that promises no output cannot be checked:\n{block.body}"


@dataclass
class Stack:
    env: dict[str, str]
    log_dir: Path
    services: list[procs.Service]

    def logs(self) -> str:
        return "\n".join(f"---- {s.name}\n{s.output()[-3000:]}" for s in self.services)


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    """A gateway and a worker on a database and Redis prefix of their own: the page's figures assume an empty
    table, as for someone trying the service for the first time."""
    own = replace(
        settings,
        mysql_dsn=settings.mysql_dsn + "_docs",
        redis_prefix=settings.redis_prefix + "docs:",
        upload_dir=str(tmp_path / "uploads"),
        import_batch_size=2000,
    )
    port = procs.free_port()
    env = procs.service_env(own, PORT=port)
    gateway = procs.Service("gateway", env, tmp_path, "gateway")
    services = [gateway]
    try:
        procs.wait_http_ready(f"http://127.0.0.1:{port}", gateway, timeout=60)
        services.append(procs.Service("worker", env, tmp_path, "worker"))
        yield Stack(env, tmp_path, services)
    finally:
        for service in services:
            service.stop()
        procs.drop_own(own)


@pytest.mark.e2e
def test_the_getting_started_commands_run_as_written(stack: Stack) -> None:
    """Each block as pasted into a shell in the repo root (bash -e: a failing command fails the test), in page
    order, with PORT set to the test's gateway (the blocks read it: `URL=http://127.0.0.1:${PORT:-8080}`). The
    try-it block's `./deploy/run.sh --detach` is left out here (this test started the stack);
    tests/system/test_deploy.py runs that block whole, run.sh included."""
    if not shutil.which("curl"):
        pytest.skip("the page's commands need curl")
    for block in docs.command_blocks(docs.GETTING_STARTED.read_text()):
        body = block.body
        if block.mark == "try-it":
            first, rest = body.split("\n", 1)
            assert first.startswith("./deploy/run.sh --detach"), first
            body = rest
        proc = subprocess.run(
            ["bash", "-e", "-c", body], cwd=REPO, env=stack.env, capture_output=True, text=True, timeout=150
        )
        assert proc.returncode == 0, f"{body}\n---- stdout\n{proc.stdout}\n---- stderr\n{proc.stderr}\n{stack.logs()}"
        printed = proc.stdout.splitlines()
        for line in block.expected:
            assert line in printed, f"expected {line!r} from\n{body}\n---- it printed\n{proc.stdout}\n{stack.logs()}"
