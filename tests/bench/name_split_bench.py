"""full_name: the rules of shared/spreadsheet/names.py against nameparser, on the names of
tests/unit/spreadsheet/test_names.py (34 the rules were written with, 12 held out).

    .venv/bin/python -m tests.bench.name_split_bench [--repeat 20]

nameparser is not a dependency of the service: run it with a Python that has it
(`python -m venv /tmp/np && /tmp/np/bin/pip install nameparser`, then that Python with PYTHONPATH set to
the checkout), else only the rules are measured. Prints, per splitter, the names split as expected
(all, and the held-out ones) and the time a name (median of `--repeat` passes over the list).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from shared.spreadsheet.names import split_full_name
from tests.unit.spreadsheet.test_names import HELD_OUT, NAMES

Splitter = Callable[[str], tuple[str | None, str | None]]


def nameparser_split() -> Splitter | None:
    try:
        from nameparser import HumanName
    except ImportError:
        return None

    def split(text: str) -> tuple[str | None, str | None]:
        name = HumanName(text)
        first = " ".join(part for part in (name.first, name.middle) if part) or None
        last = " ".join(part for part in (name.last, name.suffix) if part) or None
        return (last, None) if first is None and last is not None else (first, last)

    return split


def measure(split: Splitter, repeat: int) -> tuple[int, int, float, list[str]]:
    cases = NAMES + HELD_OUT
    right = [text for text, first, last in cases if split(text) == (first, last)]
    held = sum(1 for text, first, last in HELD_OUT if split(text) == (first, last))
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        for text, _first, _last in cases:
            split(text)
        timings.append((time.perf_counter() - started) / len(cases))
    wrong = [text for text, *_ in cases if text not in right]
    return len(right), held, statistics.median(timings) * 1e6, wrong


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    splitters: dict[str, Splitter | None] = {"rules": split_full_name, "nameparser": nameparser_split()}
    total = len(NAMES) + len(HELD_OUT)
    print(f"| splitter | right of {total} | held out right of {len(HELD_OUT)} | µs a name | wrong |")
    print("| --- | --- | --- | --- | --- |")
    for name, split in splitters.items():
        if split is None:
            print(f"| {name} | (not installed) | | | |")
            continue
        right, held, micros, wrong = measure(split, args.repeat)
        print(f"| {name} | {right} | {held} | {micros:.1f} | {'; '.join(wrong)} |")


if __name__ == "__main__":
    main()
