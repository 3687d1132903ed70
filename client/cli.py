# The gateway's own HTTP client, shipped with the package as the `customer-import` command. It speaks
# only the public HTTP API (docs/api.md) and imports nothing from the server side (no gateway
# routes, no shared/, no worker/): only click, httpx, rich and the standard library, so it works on any
# machine that can reach a gateway.
"""`customer-import`: upload spreadsheets of customers to the import service and follow the jobs."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import IO, Any, NoReturn

import click
import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

DEFAULT_URL = "http://127.0.0.1:8080"
TERMINAL = ("completed", "failed", "cancelled")
COUNTERS = ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_skipped", "rows_invalid")
POLL_INTERVAL_S = 0.5
# While following a job, how long the gateway may be unreachable (a restart, a 503) before giving up.
FOLLOW_GRACE_S = 30.0
FILE_FORMATS = ("csv", "xlsx")
# Exit statuses of `upload --wait` and `job --wait` (listed in the --help, docs/cli.md): a script can
# tell "every row imported" from "the job completed but rows were rejected" from "the job failed".
EXIT_IMPORTED = 0
EXIT_FAILED = 1  # the job failed, or the command did (unreachable gateway, an HTTP error); click's own
EXIT_USAGE = 2  # bad usage (click's own)
EXIT_ROWS_REJECTED = 3
EXIT_INTERRUPTED = 130
EXIT_STATUSES = (
    f"Exit statuses: {EXIT_IMPORTED} done (with --wait: the job completed and every row was imported); "
    f"{EXIT_FAILED} the job failed, or an error (gateway unreachable, an HTTP error); {EXIT_USAGE} bad usage; "
    f"{EXIT_ROWS_REJECTED} the job completed but rows were rejected (see `customer-import errors ID`); "
    f"{EXIT_INTERRUPTED} Ctrl-C while following (the job goes on)."
)


def _version() -> str:
    try:
        return metadata.version("customer-import")
    except metadata.PackageNotFoundError:
        return "0"


class Unreachable(click.ClickException):
    """No HTTP answer at all: refused, unresolvable, timed out. Names the URL tried."""

    def __init__(self, url: str, exc: httpx.TransportError) -> None:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.UnsupportedProtocol):
            message = (
                f"cannot reach the gateway at {url}: {reason}. Is it running, and is the URL right? "
                "(--url or CUSTOMER_IMPORT_URL)"
            )
        elif isinstance(exc, httpx.TimeoutException):
            message = f"no answer from {url} in time ({reason}); --timeout gives it longer"
        else:
            message = f"the connection to {url} broke off: {reason}"
        super().__init__(message)
        self.url = url


class ApiError(click.ClickException):
    """An HTTP error answer, shown from its problem document (RFC 9457) when it has one."""

    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.problem: dict[str, Any] = {}
        self.text = ""
        try:
            body = response.json() if "json" in response.headers.get("content-type", "") else None
        except ValueError:
            body = None
        if isinstance(body, dict):
            self.problem = body
        else:
            self.text = response.text[:500].strip()
        self.request_id = response.headers.get("X-Request-ID")
        self.url = str(response.request.url)
        title = self.problem.get("title") or response.reason_phrase or "HTTP error"
        super().__init__(f"HTTP {self.status} {title}")

    def lines(self) -> list[str]:
        p = self.problem
        out = [f"Error: {self.message}" + (f": {p['detail']}" if p.get("detail") else "")]
        if self.text:
            out.append(f"  {self.text}")
        missing = p.get("missing_columns")
        if missing:
            out.append(f"  missing columns: {', '.join(str(c) for c in missing)}")
            header = p.get("header")
            if header:
                found = header if isinstance(header, str) else ", ".join("" if c is None else str(c) for c in header)
                out.append(f"  header found: {found}")
        for item in p.get("errors") or []:
            if isinstance(item, dict):
                field = item.get("field")
                out.append(f"  {field}: {item.get('message')}" if field else f"  {item.get('message')}")
        if self.status == 401:
            out.append("  send an API key with --key or CUSTOMER_IMPORT_KEY")
        out.append(f"  ({self.url}" + (f", request id {self.request_id})" if self.request_id else ")"))
        return out

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo("\n".join(self.lines()), err=file is None, file=file)


class Api:
    """The gateway's HTTP API: every call raises ApiError on an error answer, Unreachable without one."""

    def __init__(self, url: str, key: str | None, timeout: float) -> None:
        self.url = url.rstrip("/")
        headers = {"User-Agent": f"customer-import-cli/{_version()}"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(self.url + path, exc) from None
        if response.status_code >= 400:
            raise ApiError(response)
        return response

    def get_json(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None}).json()

    def download(self, path: str, params: dict[str, str], target: Path) -> int:
        """Streams a download into `target` (written beside it first: a cut transfer leaves no file)."""
        part = target.with_name(f".{target.name}.part")
        size = 0
        try:
            with self.client.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ApiError(response)
                with part.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        size += len(chunk)
            part.replace(target)
        except httpx.TransportError as exc:
            raise Unreachable(self.url + path, exc) from None
        except OSError as exc:
            raise click.ClickException(f"cannot write {target}: {exc.strerror or exc}") from None
        finally:
            part.unlink(missing_ok=True)
        return size


def _job_path(job_id: str) -> str:
    return "/jobs/" + urllib.parse.quote(job_id, safe="")


def _api(ctx: click.Context) -> Api:
    settings: dict[str, Any] = ctx.find_root().obj
    if "api" not in settings:
        api = Api(settings["url"], settings["key"], settings["timeout"])
        ctx.find_root().call_on_close(api.close)
        settings["api"] = api
    api = settings["api"]
    assert isinstance(api, Api)
    return api


def _check_url(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{value!r} is not an http(s) URL, e.g. {DEFAULT_URL}")
    return value


def _check_mapping(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        mapping = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON ({exc})") from None
    if not isinstance(mapping, dict):
        raise click.BadParameter('must be a JSON object: {"field": "column header, letter or number"}')
    return json.dumps(mapping, ensure_ascii=False)


def _file_format(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    if _suffix(value) not in FILE_FORMATS:
        raise click.BadParameter(f"{value} must end in .csv or .xlsx (the format is taken from it)")
    return _output_file(ctx, param, value)


def _output_file(_ctx: click.Context, _param: click.Parameter, value: Path) -> Path:
    if value.is_dir():
        raise click.BadParameter(f"{value} is a directory")
    if not value.parent.is_dir():
        raise click.BadParameter(f"{value.parent} does not exist")
    return value


def _optional_output(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    return None if value is None else _output_file(ctx, param, value)


output_option = click.option(
    "-o", "--output", "output", type=click.Path(path_type=Path), required=True, callback=_file_format,
    help="File to write; .csv or .xlsx chooses the format.",
)  # fmt: skip


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog=EXIT_STATUSES)
@click.option(
    "--url", envvar="CUSTOMER_IMPORT_URL", default=DEFAULT_URL, show_default=True, callback=_check_url,
    help="The gateway's base URL [env CUSTOMER_IMPORT_URL].",
)  # fmt: skip
@click.option("--key", envvar="CUSTOMER_IMPORT_KEY", help="API key, sent as a Bearer token [env CUSTOMER_IMPORT_KEY].")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Seconds to wait for each answer (or each chunk of one).")  # fmt: skip
@click.version_option(_version(), prog_name="customer-import")
@click.pass_context
def cli(ctx: click.Context, url: str, key: str | None, timeout: float) -> None:
    """Upload spreadsheets of customers to the customer import service, follow the import jobs and
    download their errors, rejected rows, the import template and exports."""
    ctx.obj = {"url": url, "key": key, "timeout": timeout}


# ---------------------------------------------------------------------------------------------- output


def _status(status: str) -> str:
    color = {"completed": "green", "failed": "red"}.get(status, "yellow")
    return click.style(status, fg=color, bold=True)


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "-"


def _job_summary(job: dict[str, Any], *, details: bool = False) -> None:
    """The job as a person reads it: status, counters, warnings, the first row errors, the error."""
    job_id = job.get("job_id", "?")
    status = str(job.get("status", "?"))
    head = f"job {job_id} {_status(status)}"
    if job.get("duration_s") is not None:
        head += f" in {job['duration_s']} s"
        rate = _rate(job)
        if rate is not None:
            head += f", {rate:,.0f} rows/s"
    about = [str(job.get("filename") or "")]
    if job.get("dry_run"):
        about.append("dry run")
    click.echo(f"{head} ({', '.join(a for a in about if a)})")
    if details:
        progress = job.get("progress") or {}
        if status not in TERMINAL:
            total = _count(progress.get("rows_total_estimate"))
            click.echo(f"  {'progress':<15} {_count(job.get('rows_read'))}/{total} rows")
        for name in ("sheet", "encoding", "header_row", "reader", "created_at", "started_at", "finished_at",
                     "request_id"):  # fmt: skip
            if job.get(name) not in (None, ""):
                click.echo(f"  {name:<15} {job[name]}")
        if job.get("mapping"):
            click.echo(f"  {'mapping':<15} {json.dumps(job['mapping'], ensure_ascii=False)}")
    width = max(len(_count(job.get(name))) for name in COUNTERS)
    for name in COUNTERS:
        click.echo(f"  {name:<15} {_count(job.get(name)):>{width}}")
    warnings = job.get("warnings") or []
    if warnings:
        click.echo("warnings:")
        for warning in warnings:
            click.echo(f"  {warning}")
    errors = job.get("errors") or []
    if errors:
        stored = job.get("errors_stored")
        more = isinstance(stored, int) and stored > len(errors)
        click.echo(f"row errors (first {len(errors)} of {stored:,}):" if more else f"row errors ({len(errors)}):")
        for item in errors:
            # The column as the file shows it, and the value it held (issue 18: errors in the user's words).
            value = f" ({item['value']!r})" if item.get("value") is not None else ""
            click.echo(f"  row {item.get('row')}, {item.get('column') or '-'}: {item.get('message')}{value}")
        if more:
            click.echo(f"  all of them: customer-import errors {job_id} -o errors.csv")
    if job.get("error"):
        click.echo(f"error: {job['error']}")


# ---------------------------------------------------------------------------------------------- follow


class RateColumn(ProgressColumn):
    """Rows per second, as rich measures the progress updates."""

    def render(self, task: Task) -> Text:
        speed = task.fields.get("rate") or task.finished_speed or task.speed
        return Text(("?" if speed is None else f"{speed:,.0f}") + " rows/s", style="progress.data.speed")


def _poller(api: Api, job_id: str) -> Callable[[], dict[str, Any]]:
    """GET /jobs/{id}, riding out a gateway that is briefly away (restarting, 502-504) while the job runs."""
    path = _job_path(job_id)
    failing_since: list[float] = []

    def poll() -> dict[str, Any]:
        while True:
            try:
                job: dict[str, Any] = api.get_json(path)
                failing_since.clear()
                return job
            except (Unreachable, ApiError) as exc:
                if isinstance(exc, ApiError) and exc.status not in (502, 503, 504):
                    raise
                if not failing_since:
                    failing_since.append(time.monotonic())
                elif time.monotonic() - failing_since[0] > FOLLOW_GRACE_S:
                    raise
                time.sleep(1.0)

    return poll


def _ticks(poll: Callable[[], dict[str, Any]], interval: float) -> Iterator[dict[str, Any]]:
    """The job every `interval` seconds, until it is completed or failed (that one included)."""
    while True:
        started = time.monotonic()
        job = poll()
        yield job
        if job.get("status") in TERMINAL:
            return
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


def _rate(job: dict[str, Any]) -> float | None:
    """Rows per second of a finished job, from its own duration."""
    duration, rows = job.get("duration_s"), job.get("rows_read")
    if job.get("status") in TERMINAL and isinstance(duration, int | float) and duration > 0 and rows:
        return float(rows) / duration
    return None


def _rows(job: dict[str, Any]) -> tuple[int, int | None]:
    done = int(job.get("rows_read") or 0)
    total = (job.get("progress") or {}).get("rows_total_estimate")
    if job.get("status") == "completed":
        total = done
    return done, (int(total) if isinstance(total, int) else None)


def follow(api: Api, job_id: str, interval: float = POLL_INTERVAL_S) -> dict[str, Any]:
    """Follows a job to its end: a progress bar on a terminal, else one plain line per change."""
    poll = _poller(api, job_id)
    console = Console()
    if not console.is_terminal:
        last: tuple[Any, ...] | None = None
        job: dict[str, Any] = {}
        for job in _ticks(poll, interval):
            done, total = _rows(job)
            status = str(job.get("status"))
            now = (status, done, total)
            if now != last:
                rows = "" if status in ("uploaded", "queued") else f" {done}/{'?' if total is None else total} rows"
                click.echo(f"{status}{rows}")
                last = now
        return job
    with Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("waiting", total=None)
        for job in _ticks(poll, interval):
            done, total = _rows(job)
            status = str(job.get("status"))
            progress.update(task, description=status, completed=done, total=total, rate=_rate(job))
    return job


def exit_status(job: dict[str, Any]) -> int:
    """The exit status for a job that ended (see EXIT_STATUSES)."""
    if job.get("status") != "completed":
        return EXIT_FAILED
    return EXIT_ROWS_REJECTED if (job.get("rows_invalid") or 0) > 0 else EXIT_IMPORTED


def _follow_and_report(ctx: click.Context, api: Api, job_id: str) -> NoReturn:
    """Follows the job, prints its summary and exits with `exit_status`."""
    try:
        job = follow(api, job_id)
    except KeyboardInterrupt:
        click.echo(f"\nstopped following; the job goes on: customer-import job {job_id} --wait", err=True)
        ctx.exit(EXIT_INTERRUPTED)
    _job_summary(job)
    ctx.exit(exit_status(job))


# -------------------------------------------------------------------------------------------- commands


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option(
    "--wait",
    is_flag=True,
    help=f"Follow the job to its end; exit {EXIT_ROWS_REJECTED} if rows were rejected, {EXIT_FAILED} if it failed.",
)
@click.option("--dry-run", is_flag=True, help="Read and validate every row, write nothing.")
@click.option("--mapping", callback=_check_mapping, metavar="JSON",
              help='Columns for fields: {"field": "header text, letter or 1-based number"}.')  # fmt: skip
@click.option("--header-row", type=click.IntRange(min=0), metavar="N",
              help="1-based row of the header; 0: the file has none (map columns by letter).")  # fmt: skip
@click.option("--sheet", metavar="S", help="Worksheet name or 1-based number (default: the sheet that fits best).")
@click.option("--encoding", metavar="E", help="CSV text encoding, e.g. cp1252 (default: detected).")
# The choices of these are the service's (its API document): `customer-import options` lists them, and a
# value that is none of them is refused before the file is sent.
@click.option("--mode", metavar="MODE", help="Which customers to add or update (see: customer-import options).")
@click.option("--blank-cells", metavar="B", help="What an empty cell does (see: customer-import options).")
@click.option("--match-on", metavar="M", help="How a row finds its customer (see: customer-import options).")
@click.pass_context
def upload(
    ctx: click.Context,
    file: Path,
    wait: bool,
    dry_run: bool,
    mapping: str | None,
    header_row: int | None,
    sheet: str | None,
    encoding: str | None,
    mode: str | None,
    blank_cells: str | None,
    match_on: str | None,
) -> None:
    """Upload a .xlsx or .csv file of customers.

    Prints the job id; --wait follows the import to its end and prints its counters, warnings and
    first row errors, and exits 0 when every row was imported, 3 when rows were rejected, 1 when the
    job failed."""
    api = _api(ctx)
    form = {"dry_run": "true" if dry_run else None, "mapping": mapping, "sheet": sheet, "encoding": encoding}
    form["header_row"] = None if header_row is None else str(header_row)
    chosen = {"mode": mode, "blank_cells": blank_cells, "match_on": match_on}
    if any(value is not None for value in chosen.values()):
        form.update(_check_choices(api, chosen))
    try:
        handle = file.open("rb")
    except OSError as exc:
        raise click.BadParameter(f"cannot read {file}: {exc.strerror or exc}", param_hint="'FILE'") from None
    with handle:
        answer = api.request(
            "POST",
            "/upload",
            data={k: v for k, v in form.items() if v is not None},
            files={"file": (file.name, handle, "application/octet-stream")},
        ).json()
    job_id = answer["job_id"]
    click.echo(f"job {job_id} {answer.get('status')}: {answer.get('filename')}" + (" (dry run)" if dry_run else ""))
    if wait:
        _follow_and_report(ctx, api, job_id)
    click.echo(f"follow it: customer-import job {job_id} --wait")


def upload_choices(api: Api) -> dict[str, dict[str, dict[str, str]]]:
    """option -> {choice -> {label, description}}: the upload's options that take one of a few values, as
    the service's API document declares them (`x-choices`, from shared/imports/options.py)."""
    document = api.get_json("/openapi.json")
    properties = document["components"]["schemas"]["UploadForm"]["properties"]
    return {name: prop["x-choices"] for name, prop in properties.items() if "x-choices" in prop}


def _check_choices(api: Api, chosen: dict[str, str | None]) -> dict[str, str]:
    choices = upload_choices(api)
    checked: dict[str, str] = {}
    for name, value in chosen.items():
        if value is None:
            continue
        known = choices.get(name, {})
        if known and value.strip().lower() not in known:
            flag = "--" + name.replace("_", "-")
            raise click.BadParameter(f"{value!r} is not one of: {', '.join(known)}.", param_hint=f"'{flag}'")
        checked[name] = value
    return checked


@cli.command()
@click.pass_context
def options(ctx: click.Context) -> None:
    """List the choices of --mode, --blank-cells and --match-on, as the service declares them."""
    for name, known in upload_choices(_api(ctx)).items():
        click.echo(f"--{name.replace('_', '-')}:")
        for index, (value, about) in enumerate(known.items()):
            default = " (default)" if index == 0 else ""
            click.echo(f"  {value:<10} {about['label']}{default}: {about['description']}")


@cli.command()
@click.pass_context
def fields(ctx: click.Context) -> None:
    """List the customer fields a mapping may name (GET /fields), the required ones marked."""
    answer = _api(ctx).get_json("/fields")
    for item in answer["items"]:
        need = " (required)" if item["required"] else ""
        click.echo(f"  {item['name']:<14} {item['label']}{need}: at most {item['max_length']} characters")
    click.echo(f"  {answer['full_name']['name']:<14} {answer['full_name']['label']}: split into first and last name")
    click.echo(f"  {answer['attribute_prefix']}<name>  kept on the customer under that name")


@cli.command()
@click.option("--limit", type=click.IntRange(min=1, max=10_000), default=20, show_default=True)
@click.pass_context
def jobs(ctx: click.Context, limit: int) -> None:
    """List recent import jobs, newest first."""
    api = _api(ctx)
    items: list[dict[str, Any]] = []
    cursor = None
    while len(items) < limit:
        page = api.get_json("/jobs", limit=min(limit - len(items), 200), cursor=cursor)
        items.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    columns = ["id", "status", "filename", *(name.removeprefix("rows_") for name in COUNTERS), "created_at"]
    console = Console()
    rows = [
        [str(j.get("job_id")), str(j.get("status")), str(j.get("filename") or "").replace("\t", " ")]
        + [_count(j.get(name)) if console.is_terminal else str(j.get(name)) for name in COUNTERS]
        + [str(j.get("created_at") or "")]
        for j in items
    ]
    if not console.is_terminal:  # tab-separated, plain numbers: for grep, cut and awk
        for row in [columns, *rows]:
            click.echo("\t".join(row))
        return
    table = Table(*columns, box=None, header_style="bold")
    for column in table.columns[3:8]:
        column.justify = "right"
    table.columns[0].no_wrap = True
    for row in rows:  # Text cells: a filename is never read as rich markup
        status = Text(row[1], style={"completed": "green", "failed": "red"}.get(row[1], "yellow"))
        table.add_row(Text(row[0]), status, *(Text(cell) for cell in row[2:]))
    console.print(table)


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the job document as JSON.")
@click.option(
    "--wait",
    is_flag=True,
    help=f"Follow the job to its end; exit {EXIT_ROWS_REJECTED} if rows were rejected, {EXIT_FAILED} if it failed.",
)
@click.pass_context
def job(ctx: click.Context, job_id: str, as_json: bool, wait: bool) -> None:
    """Show one job: status, counters, warnings, first row errors."""
    api = _api(ctx)
    if wait:
        _follow_and_report(ctx, api, job_id)
    doc = api.get_json(_job_path(job_id))
    if as_json:
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        _job_summary(doc, details=True)


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option("-o", "--output", type=click.Path(path_type=Path), callback=_optional_output,
              help="Write every row error to this CSV file (row, column, message).")  # fmt: skip
@click.pass_context
def errors(ctx: click.Context, job_id: str, output: Path | None) -> None:
    """Get every stored row error of a job.

    To a CSV file with -o (row, column, message), else to stdout as JSON, one error a line."""
    api = _api(ctx)
    path = _job_path(job_id) + "/errors"
    if output is not None:
        size = api.download(path, {"format": "csv"}, output)
        click.echo(f"wrote {output} ({size:,} bytes)")
        return
    cursor = None
    while True:
        page = api.get_json(path, limit=1000, cursor=cursor)
        for item in page["items"]:
            click.echo(json.dumps(item, ensure_ascii=False))
        cursor = page.get("next_cursor")
        if not cursor:
            return


@cli.command()
@click.argument("job_id", metavar="ID")
@output_option
@click.pass_context
def rejected(ctx: click.Context, job_id: str, output: Path) -> None:
    """Download the invalid rows of a job.

    The rows as uploaded, plus an `errors` column: fix the cells and upload the file as it is."""
    size = _api(ctx).download(_job_path(job_id) + "/rejected", {"format": _suffix(output)}, output)
    click.echo(f"wrote {output} ({size:,} bytes)")


@cli.command()
@output_option
@click.option("--q", "query", metavar="TEXT", help="Only customers whose names, email or company match.")
@click.pass_context
def export(ctx: click.Context, output: Path, query: str | None) -> None:
    """Download every customer (or those matching --q), streamed.

    Importing the file again gives every row `unchanged`."""
    params = {"format": _suffix(output)}
    if query is not None:
        params["q"] = query
    size = _api(ctx).download("/customers/export", params, output)
    click.echo(f"wrote {output} ({size:,} bytes)")


@cli.command()
@output_option
@click.pass_context
def template(ctx: click.Context, output: Path) -> None:
    """Download an empty import file.

    The header row, with a note on each column in .xlsx."""
    size = _api(ctx).download("/template", {"format": _suffix(output)}, output)
    click.echo(f"wrote {output} ({size:,} bytes)")


# ------------------------------------------------------------------------------ what an import did


def _json_lines(api: Api, path: str, **params: Any) -> None:
    """Every item of a paginated endpoint, one JSON object a line."""
    cursor = None
    while True:
        page = api.get_json(path, limit=1000, cursor=cursor, **params)
        for item in page["items"]:
            click.echo(json.dumps(item, ensure_ascii=False))
        cursor = page.get("next_cursor")
        if not cursor:
            return


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option("-o", "--output", type=click.Path(path_type=Path), callback=_optional_output,
              help="Write the changes to this CSV file.")  # fmt: skip
@click.pass_context
def changes(ctx: click.Context, job_id: str, output: Path | None) -> None:
    """What a job did to each customer: inserted, updated (old -> new), deleted, restored.

    To a CSV file with -o, else to stdout as JSON, one customer a line."""
    api = _api(ctx)
    path = _job_path(job_id) + "/changes"
    if output is not None:
        size = api.download(path, {"format": "csv"}, output)
        click.echo(f"wrote {output} ({size:,} bytes)")
        return
    _json_lines(api, path)


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option("--force", is_flag=True, help="Also undo customers changed since the import (else left, and listed).")
@click.option("--wait", is_flag=True, help="Follow the revert job to its end and print what it did.")
@click.pass_context
def revert(ctx: click.Context, job_id: str, force: bool, wait: bool) -> None:
    """Undo an import: delete the customers it inserted, restore those it updated.

    Queues a revert job and prints its id. Customers changed since the import are conflicts: left as
    they are and listed in the revert job's errors, unless --force."""
    api = _api(ctx)
    answer = api.request("POST", _job_path(job_id) + "/revert", json={"force": True} if force else {}).json()
    revert_id = answer["job_id"]
    click.echo(f"revert job {revert_id} {answer.get('status')}: undoing {job_id}" + (" (force)" if force else ""))
    if wait:
        _follow_and_report(ctx, api, revert_id)
    click.echo(f"follow it: customer-import job {revert_id} --wait")


@cli.command()
@click.argument("job_id", metavar="ID")
@click.pass_context
def cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel a queued or running job.

    A queued job ends at once; a running one stops at its next batch (what it committed stays, and can
    be reverted)."""
    answer = _api(ctx).request("POST", _job_path(job_id) + "/cancel").json()
    click.echo(f"job {job_id} {_status(str(answer.get('status')))}")


# ---------------------------------------------------------------------------------------- customers


@cli.group()
def customers() -> None:
    """Browse customers: list (sorted, searched), get one, its history."""


def _customer_path(customer_id: int) -> str:
    return f"/customers/{customer_id}"


@customers.command("list")
@click.option("--q", "query", metavar="TEXT", help="Only customers whose names, email or company match.")
@click.option("--sort", metavar="FIELD", help="A field, id, created_at or updated_at; -FIELD for descending.")
@click.option("--limit", type=click.IntRange(min=1, max=100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One customer a line as JSON.")
@click.pass_context
def customers_list(ctx: click.Context, query: str | None, sort: str | None, limit: int, as_json: bool) -> None:
    """List customers, by id or by --sort, with how many match."""
    api = _api(ctx)
    items: list[dict[str, Any]] = []
    cursor = None
    total = None
    while len(items) < limit:
        page = api.get_json(
            "/customers", limit=min(limit - len(items), 1000), cursor=cursor, q=query, sort=sort,
            count="true" if total is None else None,
        )  # fmt: skip
        total = page.get("total", total)
        items.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    if as_json:
        for item in items:
            click.echo(json.dumps(item, ensure_ascii=False))
        return
    columns = ["id", "email", "first_name", "last_name", "company_name", "city", "country", "version"]
    if sort and sort.lstrip("-") not in columns:
        columns.insert(2, sort.lstrip("-"))
    console = Console()
    rows = [[("" if item.get(c) is None else str(item.get(c))) for c in columns] for item in items]
    if not console.is_terminal:  # tab-separated: for grep, cut and awk
        for row in [columns, *rows]:
            click.echo("\t".join(cell.replace("\t", " ") for cell in row))
    else:
        table = Table(*columns, box=None, header_style="bold")
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        console.print(table)
    click.echo(f"{len(items):,} of {total:,} customers" if isinstance(total, int) else f"{len(items):,} customers",
               err=not console.is_terminal)  # fmt: skip


@customers.command("get")
@click.argument("customer_id", metavar="ID", type=click.IntRange(min=1))
@click.pass_context
def customers_get(ctx: click.Context, customer_id: int) -> None:
    """One customer, as JSON."""
    click.echo(json.dumps(_api(ctx).get_json(_customer_path(customer_id)), indent=2, ensure_ascii=False))


@customers.command("history")
@click.argument("customer_id", metavar="ID", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="One change a line as JSON.")
@click.pass_context
def customers_history(ctx: click.Context, customer_id: int, as_json: bool) -> None:
    """Every change of a customer, newest first: when, what, who, from where, old -> new.

    Also for a deleted customer."""
    api = _api(ctx)
    path = _customer_path(customer_id) + "/history"
    if as_json:
        _json_lines(api, path)
        return
    cursor = None
    while True:
        page = api.get_json(path, limit=200, cursor=cursor)
        for item in page["items"]:
            source = item.get("source") or {}
            origin = source.get("job_id") or source.get("request_id") or ""
            who = item.get("by") or "-"
            click.echo(f"{item.get('at')}  {item.get('action')}  by {who}  via {source.get('kind')} {origin}".rstrip())
            for name, change in (item.get("changes") or {}).items():
                old, new = change if isinstance(change, list) and len(change) == 2 else (None, change)
                click.echo(f"    {name}: {_shown(old)} -> {_shown(new)}")
        cursor = page.get("next_cursor")
        if not cursor:
            return


def _shown(value: Any) -> str:
    if value is None:
        return "(empty)"
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


def _suffix(path: Path) -> str:
    return path.suffix.lower().lstrip(".")


def main() -> None:
    """The `customer-import` console script."""
    cli(prog_name="customer-import")


if __name__ == "__main__":
    main()
