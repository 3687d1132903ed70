"""Prometheus text-format metrics, kept per process (one Metrics object per app)."""

from __future__ import annotations

from collections import Counter, defaultdict

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.cache: Counter[str] = Counter()
        self.uploads: Counter[str] = Counter()
        self._hist: dict[str, list[int]] = defaultdict(lambda: [0] * (len(_BUCKETS) + 1))
        self._sum: dict[str, float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        buckets = self._hist[route]
        for index, bound in enumerate(_BUCKETS):
            if seconds <= bound:
                buckets[index] += 1
                break
        else:
            buckets[-1] += 1
        self._sum[route] += seconds

    def render(self) -> str:
        lines = [
            "# HELP http_requests_total HTTP requests by method, route and status.",
            "# TYPE http_requests_total counter",
        ]
        for (method, route, status), count in sorted(self.requests.items()):
            lines.append(f'http_requests_total{{method="{method}",route="{route}",status="{status}"}} {count}')
        lines += [
            "# HELP http_request_duration_seconds Request latency by route.",
            "# TYPE http_request_duration_seconds histogram",
        ]
        for route, buckets in sorted(self._hist.items()):
            running = 0
            for bound, count in zip(_BUCKETS, buckets, strict=False):
                running += count
                lines.append(f'http_request_duration_seconds_bucket{{route="{route}",le="{bound}"}} {running}')
            running += buckets[-1]
            lines.append(f'http_request_duration_seconds_bucket{{route="{route}",le="+Inf"}} {running}')
            lines.append(f'http_request_duration_seconds_sum{{route="{route}"}} {self._sum[route]:.6f}')
            lines.append(f'http_request_duration_seconds_count{{route="{route}"}} {running}')
        lines += ["# HELP customer_cache_total Customer reads by cache outcome.", "# TYPE customer_cache_total counter"]
        for state, count in sorted(self.cache.items()):
            lines.append(f'customer_cache_total{{result="{state}"}} {count}')
        lines += ["# HELP uploads_total Uploads by outcome.", "# TYPE uploads_total counter"]
        for outcome, count in sorted(self.uploads.items()):
            lines.append(f'uploads_total{{outcome="{outcome}"}} {count}')
        return "\n".join(lines) + "\n"
