"""MkDocs hooks of the documentation site (mkdocs.yml).

- The web page's screenshots stay in examples/screenshots/ (README.md shows them from there too); the site
  serves them as screenshots/<name>.png, so the pages link `screenshots/…` without a copy under docs/.
- `<!-- customer-fields -->` in a page becomes the table of the customer's fields, made from the one field
  registry (shared/customers/fields.py) when the site is built, so the page cannot disagree with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

SCREENSHOTS = Path(__file__).resolve().parents[1] / "examples" / "screenshots"
CUSTOMER_FIELDS = "<!-- customer-fields -->"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for image in sorted(SCREENSHOTS.glob("*.png")):
        files.append(File.generated(config, f"screenshots/{image.name}", abs_src_path=str(image)))
    return files


def customer_fields_table() -> str:
    from shared.customers.fields import FIELDS  # the project's own registry (installed in the venv)

    rows = [
        "| field | at most (characters) | required | also recognised in a header as | what |",
        "| --- | --- | --- | --- | --- |",
    ]
    for field in FIELDS:
        aliases = ", ".join(f"`{alias}`" for alias in field.aliases)
        required = "yes" if field.required else ""
        rows.append(f"| `{field.name}` | {field.max_length} | {required} | {aliases} | {field.description} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Any, config: MkDocsConfig, files: Files) -> str:
    if CUSTOMER_FIELDS in markdown:
        markdown = markdown.replace(CUSTOMER_FIELDS, customer_fields_table())
    return markdown
