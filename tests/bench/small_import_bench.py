"""Small imports: how long a few-row file takes, upload → `completed`, one real gateway and worker.

    .venv/bin/python -m tests.bench.small_import_bench [--files 40] [--rows 50]

Uploads `--files` csv files of `--rows` new customers one after the other (the worker idle between
them, as a person importing a short list meets it) and prints the median and 90th percentile of
upload → `completed` (polled every 5 ms), beside the baseline of the same run: the upload's own
round trip (POST /upload → 202), what the gateway alone takes. The first file is left out of the
figures (the worker's first job warms its connections). Its own database (bench_small) and Redis
prefix (bench:small:), dropped/cleared at the end; exit 0 always (the machine is shared).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tests.bench.common import bench_settings, clear_redis, code_version, drop_database, table
from tests.support.procs import Service, free_port, get_json, service_env, upload, wait_http_ready
from tests.support.workbooks import csv_bytes, customers


def _p90(values: list[float]) -> float:
    return sorted(values)[int(0.9 * (len(values) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--rows", type=int, default=50)
    args = parser.parse_args()
    settings = bench_settings("bench_small", "bench:small:")
    port = free_port()
    env = service_env(settings, PORT=port, UPLOAD_RATE_LIMIT_PER_MIN=0)
    logs = Path(tempfile.mkdtemp(prefix="bench-small-logs-"))
    gateway, worker = Service("gateway", env, logs, "gateway"), Service("worker", env, logs, "worker")
    base = f"http://127.0.0.1:{port}"
    completed: list[float] = []
    accepted: list[float] = []
    try:
        wait_http_ready(base, gateway)
        for n in range(args.files + 1):
            started = time.perf_counter()
            status, body = upload(base, f"short-{n}.csv", csv_bytes(customers(args.rows, start=n * args.rows)))
            answered = time.perf_counter()
            if status != 202:
                raise SystemExit(f"upload answered {status}: {body}")
            while (job := get_json(f"{base}/jobs/{body['job_id']}")[1])["status"] not in ("completed", "failed"):
                time.sleep(0.005)
            if job["status"] != "completed":
                raise SystemExit(f"job failed: {job.get('error')}")
            if n:
                completed.append(time.perf_counter() - started)
                accepted.append(answered - started)
    finally:
        worker.stop()
        gateway.stop()
        drop_database(settings)
        clear_redis(settings)
    print(f"small imports at {code_version()}: {args.files} files of {args.rows} rows, one after the other")
    print(
        table(
            ["", "median s", "p90 s"],
            [
                ["upload → completed", f"{statistics.median(completed):.3f}", f"{_p90(completed):.3f}"],
                ["baseline: POST /upload → 202", f"{statistics.median(accepted):.3f}", f"{_p90(accepted):.3f}"],
            ],
        )
    )


if __name__ == "__main__":
    main()
