"""py-spy helpers for the benchmarks: sample a running process and summarise where its time went.

py-spy is not a project dependency: install it anywhere (e.g. `python3 -m venv /tmp/pyspy &&
/tmp/pyspy/bin/pip install py-spy`) and pass its path with --py-spy. Sampling another process needs
ptrace rights (root, or CAP_SYS_PTRACE).

    python -m tests.bench.profile summarize FILE.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def start(py_spy: str, pid: int, out: Path, rate: int = 100) -> subprocess.Popen[bytes]:
    """Record raw (collapsed) stacks of every thread, idle ones excluded, until stop()."""
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--threads",
         "--nonblocking", "--subprocesses", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err.decode(errors="replace")


def _short(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = m.group("file")
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/", "/bench-wt/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({file})"


def summarize(path: Path, top: int = 25) -> str:
    """Per thread: samples; then the top functions by self time and by inclusive time."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0] if frames and frames[0].startswith(("thread", "process")) else "?"
        frames = [f for f in frames if not f.startswith(("thread", "process"))]
        total += count
        threads[thread] += count
        if frames:
            self_time[_short(frames[-1])] += count
        for name in {_short(f) for f in frames}:
            inclusive[name] += count
    if not total:
        return f"{path}: no samples"
    lines = [f"{path.name}: {total} samples (active, 100 Hz)"]
    lines.append("threads: " + ", ".join(f"{t} {100 * c / total:.0f}%" for t, c in threads.most_common(6)))
    lines.append(f"top {top} by self time:")
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in self_time.most_common(top)]
    lines.append(f"top {top} by inclusive time:")
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in inclusive.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summarize")
    s.add_argument("file", type=Path)
    s.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    print(summarize(args.file, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
