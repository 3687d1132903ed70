"""MkDocs hooks of the documentation site (mkdocs.yml).

The web page's screenshots stay in examples/screenshots/ (README.md shows them from there too); the site
serves them as screenshots/<name>.png, so the pages link `screenshots/…` without a copy under docs/.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

SCREENSHOTS = Path(__file__).resolve().parents[1] / "examples" / "screenshots"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for image in sorted(SCREENSHOTS.glob("*.png")):
        files.append(File.generated(config, f"screenshots/{image.name}", abs_src_path=str(image)))
    return files
