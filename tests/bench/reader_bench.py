"""Parse-only speed and peak memory of the xlsx readers, each run in a process of its own.

    .venv/bin/python -m tests.bench.reader_bench [--rows 100000,1000000] [--kinds shared,inline] [--repeat 3]
        [--readers calamine,stream,fast]

Per workbook (tests.bench.datagen's, generated once into $BENCH_CACHE) and reader: rows/s (wall) and
CPU seconds of iterating every row's values, and the process's peak RSS (ru_maxrss), medians of
`--repeat` runs taken in rotation (calamine, stream, fast, calamine, ...) so the machine's noise falls
on all alike; the ratio to calamine is of medians from the same run. Readers:

* `calamine`: python-calamine, the whole sheet (`CalamineReader`).
* `stream`: the pure-Python regex stream reader (`XlsxStreamReader`, shared strings as Python str).
* `fast`: the compiled streaming reader (`XlsxFastReader`, shared/spreadsheet/_xlsx_fast.c).

No database or Redis is used. The figures are saved as JSON in $BENCH_CACHE/results/.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench import datagen

READERS = ("calamine", "stream", "fast")


def one(reader: str, path: Path) -> dict[str, Any]:
    """In this process: read every row of `path` with `reader`."""
    from shared.spreadsheet.readers import CalamineReader
    from shared.spreadsheet.xlsx_fast import XlsxFastReader
    from shared.spreadsheet.xlsx_stream import XlsxStreamReader

    classes = {"calamine": CalamineReader, "stream": XlsxStreamReader, "fast": XlsxFastReader}
    started = time.perf_counter()
    cpu = time.process_time()
    instance = classes[reader](path)
    rows = 0
    for _ in instance.rows():
        rows += 1
    instance.close()
    seconds = time.perf_counter() - started
    return {
        "reader": reader,
        "rows": rows,
        "seconds": seconds,
        "cpu_s": time.process_time() - cpu,
        "rows_per_s": rows / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_one(reader: str, path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.reader_bench", "one", reader, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def commit() -> str:
    root = Path(__file__).resolve().parents[2]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True).stdout
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "shared", "worker", "gateway"], cwd=root, capture_output=True, text=True
    ).stdout
    return head.strip() + ("+dirty" if dirty.strip() else "")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "one":
        print(json.dumps(one(argv[1], Path(argv[2]))))
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--kinds", default="shared,inline")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--readers", default=",".join(READERS))
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.rows.split(",")]
    kinds = tuple(args.kinds.split(","))
    readers = [r for r in args.readers.split(",") if r]
    files = datagen.ensure(sizes, kinds)
    print(f"commit {commit()}; medians of {args.repeat}; each run in its own process", flush=True)
    header = f"{'workbook':34} {'reader':9} {'rows/s':>9} {'x calamine':>10} {'CPU s':>7} {'peak RSS MB':>11}"
    print(header)
    print("-" * len(header))
    results: list[dict[str, Any]] = []
    for size in sizes:
        for kind in kinds:
            path = files[(size, kind)]
            runs: dict[str, list[dict[str, Any]]] = {r: [] for r in readers}
            for _ in range(args.repeat):
                for reader in readers:
                    runs[reader].append(run_one(reader, path))
            medians = {
                r: {
                    key: statistics.median(run[key] for run in runs[r])
                    for key in ("rows_per_s", "cpu_s", "peak_rss_mb", "seconds")
                }
                for r in readers
            }
            base = medians.get("calamine", {}).get("rows_per_s")
            for reader in readers:
                m = medians[reader]
                ratio = f"{m['rows_per_s'] / base:10.2f}" if base else f"{'-':>10}"
                figures = f"{m['rows_per_s']:9,.0f} {ratio} {m['cpu_s']:7.2f} {m['peak_rss_mb']:11.0f}"
                print(f"{path.name:34} {reader:9} {figures}", flush=True)
                results.append(
                    {"file": path.name, "rows": size, "kind": kind, "reader": reader, **m, "runs": runs[reader]}
                )
    out = datagen.cache_dir() / "results"
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"reader_bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    target.write_text(json.dumps({"commit": commit(), "repeat": args.repeat, "results": results}, indent=1))
    print(f"saved {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
