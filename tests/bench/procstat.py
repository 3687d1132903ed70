"""/proc sampling for the benchmarks: a process's RSS (VmRSS, peak VmHWM) and CPU time, and which
processes (worker, gateway, mysqld, redis-server) were busy over a measured window."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0, needs ptrace rights over the process)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid: int) -> float | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and all its descendants, the ones that ended included: each live
    process's own time plus what its reaped children used (cutime, cstime). A worker's parser
    processes are its children (before 2026-12-05's change, of the fork server, itself its child)."""
    total = 0.0
    for member in (pid, *descendants(pid)):
        try:
            raw = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK_TCK
    return total


def pss_kb(pid: int) -> int | None:
    """The process's proportional set size (/proc/PID/smaps_rollup, Linux ≥ 4.14)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(raw[raw.rindex(")") + 2 :].split()[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def system_busy() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs since boot."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    total = sum(parts[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def all_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds of every process now: pid -> (comm, seconds)."""
    out: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            seconds = cpu_seconds(int(entry.name))
            if seconds is not None:
                out[int(entry.name)] = (comm, seconds)
    return out


def listening_pids(pids: list[int], port: int) -> list[int]:
    """Those of `pids` whose command line names `port` (redis-server shows its address there): other
    people's redis-server instances on this machine are not ours to count. All of them if none does."""
    mine = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f":{port}" in cmdline:
            mine.append(pid)
    return mine or pids


def find_pids(*names: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm in names:
            found.append(int(entry.name))
    return found


@dataclass
class Window:
    """CPU seconds each named process used between start() and stop(), and the system's."""

    pids: dict[str, list[int]]
    # Names whose CPU is a whole process tree's (the worker and its parser processes).
    trees: dict[str, int] = field(default_factory=dict)
    wall: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    system_busy: float = 0.0
    system_cores: float = 0.0
    _t0: float = 0.0
    _start: dict[str, float] = field(default_factory=dict)
    _sys0: tuple[float, float] = (0.0, 0.0)
    _all0: dict[int, tuple[str, float]] = field(default_factory=dict)
    top_others: list[tuple[str, float]] = field(default_factory=list)

    def _read(self) -> dict[str, float]:
        out = {name: sum(cpu_seconds(p) or 0.0 for p in pids) for name, pids in self.pids.items()}
        out.update({name: tree_cpu_seconds(root) for name, root in self.trees.items()})
        return out

    def start(self) -> None:
        self._start = self._read()
        self._all0 = all_cpu()
        self._sys0 = system_busy()
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self._t0
        end = self._read()
        self.cpu = {name: end[name] - self._start.get(name, 0.0) for name in end}
        known = {p for pids in self.pids.values() for p in pids}
        for root in self.trees.values():
            known.update((root, *descendants(root)))
        by_name: dict[str, float] = {}
        for pid, (comm, seconds) in all_cpu().items():
            if pid not in known:
                by_name[comm] = by_name.get(comm, 0.0) + seconds - self._all0.get(pid, (comm, 0.0))[1]
        self.top_others = sorted(((n, s) for n, s in by_name.items() if s > 0.05), key=lambda x: -x[1])[:4]
        busy, total = system_busy()
        self.system_busy = busy - self._sys0[0]
        self.system_cores = (total - self._sys0[1]) / max(self.wall, 1e-9)

    def percent(self, name: str) -> float:
        return 100.0 * self.cpu.get(name, 0.0) / max(self.wall, 1e-9)

    def others(self) -> float:
        """Busy CPU seconds of everything not listed (another engineer's tests, the load generator…)."""
        return max(self.system_busy - sum(self.cpu.values()), 0.0)


class RssSampler:
    """Samples VmRSS of one process every `interval` seconds in a thread; `peak_mb` is the larger of
    the sampled maximum and VmHWM (which catches spikes between samples, after reset_peak). With
    `tree`, each sample is the sum over the process and its descendants (the worker's parser
    processes; shared pages counted once per process, so it errs high), and VmHWM is the process's own;
    then `peak_pss_mb` too: the tree's summed PSS (each shared page split among its sharers, so pages
    a parent shares with its forked child are counted once), sampled every `pss_every` samples."""

    def __init__(self, pid: int, interval: float = 0.05, *, tree: bool = False) -> None:
        self.pid = pid
        self.tree = tree
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.hwm_reset = False
        self.start_kb = 0
        self.pss_kb: list[int] = []
        self.pss_every = 5

    def _run(self) -> None:
        t0 = time.perf_counter()
        n = 0
        while not self._stop.is_set():
            kb = status_kb(self.pid, "VmRSS")
            if kb is not None and self.tree:
                children = descendants(self.pid)
                kb += sum(status_kb(child, "VmRSS") or 0 for child in children)
                if n % self.pss_every == 0:
                    self.pss_kb.append(sum(pss_kb(p) or 0 for p in (self.pid, *children)))
            if kb is not None:
                self.samples.append((time.perf_counter() - t0, kb))
            n += 1
            self._stop.wait(self.interval)

    def start(self) -> None:
        self.hwm_reset = reset_peak(self.pid)
        self.start_kb = status_kb(self.pid, "VmRSS") or 0
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_pss_mb(self) -> float:
        return max(self.pss_kb, default=0) / 1024

    @property
    def sampled_peak_mb(self) -> float:
        return max((kb for _, kb in self.samples), default=0) / 1024

    @property
    def peak_mb(self) -> float:
        hwm = (status_kb(self.pid, "VmHWM") or 0) / 1024 if self.hwm_reset else 0.0
        return max(self.sampled_peak_mb, hwm)
